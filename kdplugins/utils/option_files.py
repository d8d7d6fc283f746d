"""BasicSR option files read outside ``train_pipeline`` (benchmarks, the GPU check): the options a one-process
trainer would build from them, and ``--force_yml``-style overrides."""
import os
import torch
import yaml
from typing import Sequence


def load_train_options(path: str, root: str) -> dict:
    """The training options of ``path`` as basicsr's ``parse_options`` completes them for one process without
    ``--launcher`` (phase and scale per dataset, experiment folders under ``root``), without creating folders."""
    from basicsr.utils.options import ordered_yaml
    with open(path) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False, root_path=root)
    if opt.get('num_gpu', 'auto') == 'auto':
        opt['num_gpu'] = torch.cuda.device_count()
    for phase, dataset_opt in opt['datasets'].items():
        dataset_opt.update(phase=phase.split('_')[0], scale=opt['scale'])
    exp = os.path.join(root, 'experiments', opt['name'])
    opt['path'].update(experiments_root=exp, models=exp, training_states=exp, log=exp, visualization=exp)
    return opt


def apply_overrides(opt: dict, sets: Sequence[str]) -> dict:
    """``key:sub=value`` entries applied as basicsr's ``--force_yml`` applies them (same value parsing)."""
    from basicsr.utils.options import _postprocess_yml_value
    for entry in sets:
        keys, value = entry.split('=', 1)
        target = opt
        *parents, last = keys.strip().split(':')
        for key in parents:
            target = target[key]
        target[last] = _postprocess_yml_value(value.strip())
    return opt
