"""The patches without which ``basicsr==1.4.2`` does not import, run without CUDA, read an LMDB twice, or resume a
model with frozen teachers, all of them: 7 assignment sites, installed by ``import kdplugins`` (:func:`install`,
before basicsr's first import; also in every DataLoader worker and in host projects). Nothing edits basicsr's files,
and nothing else in kdplugins replaces a name of basicsr: kdplugins' own runs go through
:func:`kdplugins.pipeline.train_pipeline`, which calls kdplugins' steps explicitly. Each patch says on which path it
applies:

1. ``torchvision.transforms.functional_tensor`` (removed in torchvision 0.17) is imported by
   ``basicsr/data/degradations.py``: an alias to ``torchvision.transforms.functional`` is put in ``sys.modules``.
   *Every path, every device* (basicsr does not import without it).
2. basicsr's ``init_dist`` divides by ``torch.cuda.device_count()`` (``torchrun`` and Slurm), passes the option
   file's ``dist_params`` to ``--launcher slurm`` only and sets no process-group timeout: ``init_dist`` of
   ``basicsr.utils.options`` (what ``parse_options`` calls) becomes
   :func:`kdplugins.runtime.distributed.init_dist_of_command_line` (``dist_params``: ``backend``, ``port``,
   ``timeout_minutes``, for both launchers) and ``basicsr.utils.dist_util.init_dist`` (a host project's own call)
   :func:`kdplugins.runtime.distributed.init_dist`; without CUDA the process group is made with gloo.
   *Every path (torchrun and Slurm), every device.*
3. ``BaseModel.model_to_device`` gives DDP ``device_ids=[torch.cuda.current_device()]``: without CUDA the wrapper is
   built without ``device_ids``. *Every path, CPU only*.
4. basicsr's ``LmdbBackend`` opens one LMDB environment per dataset, and lmdb >= 1.5 refuses to open a path that is
   already open in the process ("The environment '...' is already open in this process"): two datasets on one LMDB
   (training and validation, or two validation sets) failed. Environments are opened once per path and process and
   shared (:func:`open_lmdb`); a process made by ``fork`` closes the inherited one and opens its own, as LMDB
   requires. *Every path, every device*.
5. ``basicsr.train.load_resume_state`` maps the state to CUDA (no resume without it) and points every
   ``network_<x>`` at ``net_<x>_<iter>.pth``, also a frozen teacher that is never saved: it becomes
   :func:`kdplugins.runtime.resume.load_resume_state` (the CPU without CUDA; only the networks the model saves).
   *A host project's* ``basicsr.train.train_pipeline``, *every device*; kdplugins' pipeline calls that function itself.
6. ``basicsr.train.make_exp_dirs`` makes a folder of every ``path`` value whose key it does not know as an option:
   kdplugins' ``path.strip_prefix_<x>`` (a key prefix, e.g. ``module.``) made a stray ``module.`` folder, and crashed
   on ``~`` or ``''``. It becomes :func:`make_exp_dirs`, which leaves those keys out. *A host project's*
   ``basicsr.train.train_pipeline``, *every device*; kdplugins' pipelines call :func:`make_exp_dirs` themselves.
"""
import os
import sys
from typing import Dict, Tuple

_BASICSR = {}
_installed = False


def _alias_functional_tensor() -> None:
    import torchvision.transforms.functional as functional
    sys.modules.setdefault('torchvision.transforms.functional_tensor', functional)


def _model_to_device_any_device(self, net):
    import torch
    from torch.nn.parallel import DistributedDataParallel
    if torch.cuda.is_available() or not self.opt['dist']:
        return _BASICSR['model_to_device'](self, net)
    net = net.to(self.device)
    return DistributedDataParallel(net, find_unused_parameters=self.opt.get('find_unused_parameters', False))


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


NOT_FOLDERS = ('strip_prefix_', )  # path keys that are options, not folders


def make_exp_dirs(opt: dict) -> None:
    """basicsr's ``make_exp_dirs`` with the ``path`` keys that are not folders (:data:`NOT_FOLDERS`) left out."""
    path = opt['path']
    kept = {key: path.pop(key) for key in list(path) if key.startswith(NOT_FOLDERS)}
    try:
        _BASICSR['make_exp_dirs'](opt)
    finally:
        path.update(kept)


def install() -> None:
    """Install the patches 1-6 of the module docstring (idempotent). Must run before the first ``import basicsr``."""
    global _installed
    if _installed:
        return
    _alias_functional_tensor()  # 1
    import basicsr.train
    from basicsr.models.base_model import BaseModel
    from basicsr.utils import dist_util, options
    from basicsr.utils.file_client import LmdbBackend

    from kdplugins.runtime import distributed, resume
    _BASICSR.update(model_to_device=BaseModel.model_to_device, make_exp_dirs=basicsr.train.make_exp_dirs)
    options.init_dist = distributed.init_dist_of_command_line  # 2
    dist_util.init_dist = distributed.init_dist  # 2
    BaseModel.model_to_device = _model_to_device_any_device  # 3
    LmdbBackend.__init__ = _lmdb_backend_init_sharing  # 4
    basicsr.train.load_resume_state = resume.load_resume_state  # 5
    basicsr.train.make_exp_dirs = make_exp_dirs  # 6
    _installed = True


def installed() -> bool:
    return _installed
