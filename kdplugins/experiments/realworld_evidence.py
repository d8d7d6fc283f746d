"""Paired-seed evidence of real-world KD at CPU scale (``python scripts/realworld_evidence.py``; docs/realworld_kd.md).

1. the data of :mod:`kdplugins.experiments.realworld_data` (training photos, fixed degraded validation pairs);
2. the teacher of options/train/RealWorldKD/train_RealESRNetTeacher_RRDBNet_x4_cpu.yml, once;
3. per seed, the compact student of train_RealESRNetKD_RRDBNet_SRVGGNetCompact_x4_cpu.yml twice: distilled
   (``RealESRNetKDModel``) and alone (``RealESRNetPlainModel``: the same file without the teacher and ``kd_opt``),
   which draw the same LR batches for the same seed;
4. the paired differences (distilled - alone) of the last validation's PSNR and SSIM, with Student t intervals
   (:func:`kdplugins.experiments.statistics.compare_paired`), printed as a markdown table.

Runs resume (``--auto_resume``) and finished runs are skipped; the derived option files are written under
``experiments/realworld_evidence/``.
"""
import copy
import os
import yaml
from typing import Dict, Optional, Sequence

from kdplugins.experiments.demo import read_options, train
from kdplugins.experiments.realworld_data import write_realworld_demo
from kdplugins.experiments.reproduction_logs import history
from kdplugins.experiments.statistics import MARKDOWN_HEADER, compare_paired, markdown_row

FOLDER = os.path.join('options', 'train', 'RealWorldKD')
TEACHER_FILE = os.path.join(FOLDER, 'train_RealESRNetTeacher_RRDBNet_x4_cpu.yml')
KD_FILE = os.path.join(FOLDER, 'train_RealESRNetKD_RRDBNet_SRVGGNetCompact_x4_cpu.yml')
DATA = os.path.join('datasets', 'realworld_demo')
OPTIONS_OUT = os.path.join('experiments', 'realworld_evidence')


def student_options(seed: int, distilled: bool) -> dict:
    """The student's options for ``seed``: distilled (the KD file) or alone (without teacher and KD term)."""
    opt = copy.deepcopy(read_options(KD_FILE))
    opt['manual_seed'] = seed
    opt['name'] = f'{opt["name"]}_{"kd" if distilled else "alone"}_s{seed}'
    if not distilled:
        opt['model_type'] = 'RealESRNetPlainModel'
        del opt['network_t'], opt['train']['kd_opt']
        for key in [k for k in opt['path'] if k.endswith('_t')]:
            del opt['path'][key]
    return opt


def write_options(opt: dict) -> str:
    os.makedirs(OPTIONS_OUT, exist_ok=True)
    path = os.path.join(OPTIONS_OUT, f'{opt["name"]}.yml')
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return path


def last_scores(name: str) -> Optional[Dict[str, float]]:
    """PSNR and SSIM of the run's last validation on the fixed pairs, or None before its first."""
    curve = history(name).get('realworld_demo_val')
    return {'psnr': curve[-1][1], 'ssim': curve[-1][2]} if curve else None


def run(seeds: Sequence[int], iterations: Optional[int] = None) -> str:
    """Steps 1-4 of the module; ``iterations`` shortens every run (a smoke run). Returns the table."""
    if not os.path.isfile(os.path.join(DATA, 'meta_info.txt')):
        write_realworld_demo(DATA)
    force = [f'train:total_iter={iterations}'] if iterations else []
    train(TEACHER_FILE, force)
    scores: Dict[str, Dict[int, Dict[str, float]]] = {'kd': {}, 'alone': {}}
    for seed in seeds:
        for kind in scores:
            opt = student_options(seed, kind == 'kd')
            # a shortened teacher is not yet better than bicubic upscaling: no teacher check in a smoke run
            train(write_options(opt), force + (['train:teacher_check=false'] if iterations and kind == 'kd' else []))
            found = last_scores(opt['name'])
            if found:
                scores[kind][seed] = found
    rows = [MARKDOWN_HEADER]
    for metric in ('psnr', 'ssim'):
        comparison = compare_paired({
            s: v[metric]
            for s, v in scores['kd'].items()
        }, {
            s: v[metric]
            for s, v in scores['alone'].items()
        }, 'distilled', 'alone', f'realworld_demo_val ({metric.upper()})')
        rows.append(markdown_row(comparison))
    return '\n'.join(rows)
