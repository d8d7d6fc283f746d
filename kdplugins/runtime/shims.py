"""Shims without which ``basicsr==1.4.2`` does not import, run without CUDA, read an LMDB twice, or resume a
kdplugins model. Installed by ``import kdplugins`` (:func:`install_shims`, before basicsr's first import).

Nothing edits basicsr's files. Each shim says on which path it applies:

1. ``torchvision.transforms.functional_tensor`` (removed in torchvision 0.17) is imported by
   ``basicsr/data/degradations.py``: an alias to ``torchvision.transforms.functional`` is put in ``sys.modules``.
   *Every device* (basicsr does not import without it).
2. ``basicsr.utils.dist_util._init_dist_pytorch`` divides by ``torch.cuda.device_count()``: without CUDA the process
   group is made with the ``gloo`` backend. *CPU only*; with CUDA basicsr's own function runs (NCCL).
3. ``BaseModel.model_to_device`` gives DDP ``device_ids=[torch.cuda.current_device()]``: without CUDA the wrapper is
   built without ``device_ids``. *CPU only*.
4. ``basicsr.train.load_resume_state`` maps the state to the current CUDA device: without CUDA it is mapped to the
   CPU (same lookup of the latest state). *CPU only*.
5. basicsr's ``LmdbBackend`` opens one LMDB environment per dataset, and lmdb >= 1.5 refuses to open a path that is
   already open in the process ("The environment '...' is already open in this process"): two datasets on one LMDB
   (training and validation, or two validation sets) failed. Environments are now opened once per path and process
   and shared (:func:`open_lmdb`); a process made by ``fork`` closes the inherited one and opens its own, as LMDB
   requires. *Every device*.
6. ``basicsr.train.check_resume`` points ``path.pretrain_network_<x>`` at ``net_<x>_<iter>.pth`` for every
   ``network_<x>``, also the teacher ``network_t`` that kdplugins' models never save: the teacher's
   ``pretrain_network_t``, ``param_key_t`` and ``strict_load_t`` are kept. *Every device*; option files without a
   ``network_t`` (all of basicsr's) are unaffected.
7. ``basicsr.utils.make_exp_dirs`` makes a folder of every ``path`` value whose key it does not know as an option:
   kdplugins' ``path.strip_prefix_t`` (a key prefix, e.g. ``module.``) made a stray ``module.`` folder, and crashed on
   ``~`` or ``''``. It is left out of the folder creation. *Every device*; other keys are unaffected.
"""
import os
import sys
from typing import Dict, Tuple

_BASICSR = {}
_installed = False


def _alias_functional_tensor() -> None:
    import torchvision.transforms.functional as functional
    sys.modules.setdefault('torchvision.transforms.functional_tensor', functional)


def _init_dist_pytorch_any_device(backend: str = 'nccl', **kwargs) -> None:
    import torch
    import torch.distributed as dist
    if torch.cuda.is_available():
        return _BASICSR['init_dist_pytorch'](backend, **kwargs)
    dist.init_process_group(backend='gloo', **kwargs)


def _model_to_device_any_device(self, net):
    import torch
    from torch.nn.parallel import DistributedDataParallel
    if torch.cuda.is_available() or not self.opt['dist']:
        return _BASICSR['model_to_device'](self, net)
    net = net.to(self.device)
    return DistributedDataParallel(net, find_unused_parameters=self.opt.get('find_unused_parameters', False))


def _load_resume_state_any_device(opt: dict):
    import torch
    if torch.cuda.is_available():
        return _BASICSR['load_resume_state'](opt)
    return _load_resume_state_on_cpu(opt)


def _load_resume_state_on_cpu(opt: dict):
    """basicsr's ``load_resume_state`` with the state mapped to the CPU (same lookup of the latest state)."""
    import torch
    from basicsr.train import check_resume
    from basicsr.utils import scandir
    state_path = None if opt['auto_resume'] else opt['path'].get('resume_state')
    if opt['auto_resume']:
        states_dir = os.path.join('experiments', opt['name'], 'training_states')
        states = list(scandir(states_dir, suffix='state', recursive=False)) if os.path.isdir(states_dir) else []
        if states:
            latest = max(int(float(name.split('.state')[0])) for name in states)
            state_path = os.path.join(states_dir, f'{latest}.state')
            opt['path']['resume_state'] = state_path
    if not state_path:
        return None
    resume_state = torch.load(state_path, map_location='cpu', weights_only=False)
    check_resume(opt, resume_state['iter'])
    return resume_state


# (pid of the opening process, environment, open arguments) by real path
_LMDB_ENVIRONMENTS: Dict[str, Tuple[int, object, dict]] = {}


def open_lmdb(path: str, **kwargs):
    """The process's one LMDB environment of ``path`` (opened with ``kwargs`` on first use)."""
    import lmdb
    key = os.path.realpath(path)
    pid = os.getpid()
    if key in _LMDB_ENVIRONMENTS:
        owner, env, opened_with = _LMDB_ENVIRONMENTS[key]
        if owner == pid:
            if opened_with != kwargs:
                raise ValueError(f'LMDB {path!r} is already open in this process with {opened_with}; it cannot be '
                                 f'opened a second time with {kwargs} (lmdb allows one environment per path and '
                                 'process). Give both datasets the same io_backend options.')
            return env
        env.close()  # inherited through fork: LMDB environments must not be used across fork
    env = lmdb.open(path, **kwargs)
    _LMDB_ENVIRONMENTS[key] = (pid, env, kwargs)
    return env


def _lmdb_backend_init_sharing(self,
                               db_paths,
                               client_keys='default',
                               readonly=True,
                               lock=False,
                               readahead=False,
                               **kwargs):
    """basicsr's ``LmdbBackend.__init__`` with environments from :func:`open_lmdb`."""
    client_keys = [client_keys] if isinstance(client_keys, str) else client_keys
    self.db_paths = [str(v) for v in db_paths] if isinstance(db_paths, list) else [str(db_paths)]
    assert len(client_keys) == len(self.db_paths), ('client_keys and db_paths should have the same length, '
                                                    f'but received {len(client_keys)} and {len(self.db_paths)}.')
    self._client = {
        client: open_lmdb(path, readonly=readonly, lock=lock, readahead=readahead, **kwargs)
        for client, path in zip(client_keys, self.db_paths)
    }


def _check_resume_keeping_teacher(opt: dict, resume_iter: int) -> None:
    kept = {
        key: opt['path'][key]
        for key in ('pretrain_network_t', 'param_key_t', 'strict_load_t') if key in opt['path']
    }
    _BASICSR['check_resume'](opt, resume_iter)
    opt['path'].update(kept)


PATH_OPTIONS_NOT_FOLDERS = ('strip_prefix_t', )


def _make_exp_dirs_without_options(opt: dict) -> None:
    path = opt['path']
    kept = {key: path.pop(key) for key in PATH_OPTIONS_NOT_FOLDERS if key in path}
    try:
        _BASICSR['make_exp_dirs'](opt)
    finally:
        path.update(kept)


def install_shims() -> None:
    """Install the shims (idempotent). Must run before the first ``import basicsr``."""
    global _installed
    if _installed:
        return
    _alias_functional_tensor()
    import basicsr.test
    import basicsr.train
    from basicsr.models.base_model import BaseModel
    from basicsr.utils import dist_util
    from basicsr.utils.file_client import LmdbBackend
    _BASICSR.update(
        init_dist_pytorch=dist_util._init_dist_pytorch,
        model_to_device=BaseModel.model_to_device,
        load_resume_state=basicsr.train.load_resume_state,
        check_resume=basicsr.train.check_resume,
        make_exp_dirs=basicsr.train.make_exp_dirs)
    dist_util._init_dist_pytorch = _init_dist_pytorch_any_device
    BaseModel.model_to_device = _model_to_device_any_device
    basicsr.train.load_resume_state = _load_resume_state_any_device
    basicsr.train.check_resume = _check_resume_keeping_teacher
    basicsr.train.make_exp_dirs = _make_exp_dirs_without_options
    basicsr.test.make_exp_dirs = _make_exp_dirs_without_options
    LmdbBackend.__init__ = _lmdb_backend_init_sharing
    _installed = True


def shims_installed() -> bool:
    return _installed
