"""Reading the logs of the reproduction's runs (``experiments/<run>/train_*.log``, written by basicsr's loggers).

Every function takes a run name and reads the folder ``experiments/<run>`` under the current directory (the
repository root when run by ``scripts/reproduce.py``): iteration lines of basicsr's ``MessageLogger`` (iteration,
iteration time, loss terms), the validation blocks of ``SRModel`` (PSNR / SSIM per set) and the teacher's scores
that :mod:`kdplugins` logs before training.
"""
import os
import re
import statistics
from typing import Dict, List, Optional, Tuple


def finished(name: str) -> bool:
    """Whether run ``name`` finished (its last checkpoint ``models/net_g_latest.pth`` exists)."""
    return os.path.isfile(os.path.join('experiments', name, 'models', 'net_g_latest.pth'))


ITER_LINE = re.compile(r'\[epoch:\s*\d+, iter:\s*([\d,]+), lr:.*time \(data\): ([0-9.]+)')
VALIDATION = re.compile(r'Validation (\w+)\n\t # psnr: ([0-9.]+).*\n\t # ssim: ([0-9.]+)')
# the teacher's validation (kdplugins' DistillModel): once for a frozen network_t, at every validation for CSD's
# width-1.0 network
TEACHER = re.compile(r'Teacher \(([^)]*)\) on (\w+): psnr: ([0-9.]+), ssim: ([0-9.]+)')


def read_log(name: str) -> str:
    """The run's training logs (``train_*`` files of its folder, in name order) as one text; '' without a folder."""
    folder = os.path.join('experiments', name)
    if not os.path.isdir(folder):
        return ''
    return ''.join(open(os.path.join(folder, f)).read() for f in sorted(os.listdir(folder)) if f.startswith('train_'))


def last_iteration(name: str) -> int:
    """The last iteration of an iteration line in the log (0 before the first)."""
    found = ITER_LINE.findall(read_log(name))
    return int(found[-1][0].replace(',', '')) if found else 0


def history(name: str) -> Dict[str, List[Tuple[int, float, float]]]:
    """``{dataset: [(iter, psnr, ssim), ...]}`` from the validations in the log (the last iter logged before each);
    the teacher's validations as ``{dataset}_teacher``."""
    log = read_log(name)
    curves: Dict[str, Dict[int, Tuple[float, float]]] = {}
    matches = [(m, m.group(1)) for m in VALIDATION.finditer(log)]
    matches += [(m, f'{m.group(2)}_teacher') for m in TEACHER.finditer(log)]
    for match, dataset in matches:
        before = ITER_LINE.findall(log[:match.start()])
        iteration = int(before[-1][0].replace(',', '')) if before else 0
        curves.setdefault(dataset, {})[iteration] = (float(match.group(match.re.groups - 1)),
                                                     float(match.group(match.re.groups)))
    return {dataset: [(i, *values) for i, values in sorted(points.items())] for dataset, points in curves.items()}


LOSS_TERM = re.compile(r'(l_\w+): ([0-9.e+-]+)')


def final_losses(name: str, points: int = 4) -> Dict[str, float]:
    """Each logged loss term, averaged over the last ``points`` iteration lines of the log."""
    lines = [line for line in read_log(name).splitlines() if ITER_LINE.search(line)][-points:]
    terms: Dict[str, List[float]] = {}
    for line in lines:
        for term, value in LOSS_TERM.findall(line.split('] ', 2)[-1]):
            terms.setdefault(term, []).append(float(value))
    return {term: statistics.mean(values) for term, values in terms.items()}


def feature_term_fraction(name: str) -> Optional[float]:
    """The feature-distillation terms (all but ``l_pix`` and ``l_kd``) over the pixel term, at the end of a run."""
    losses = final_losses(name)
    if 'l_pix' not in losses:
        return None
    return sum(v for k, v in losses.items() if k not in ('l_pix', 'l_kd')) / losses['l_pix']


def step_time(name: str) -> Optional[float]:
    """Median of the iteration times basicsr logs (each an average over its recent iterations)."""
    times = [float(t) for _, t in ITER_LINE.findall(read_log(name))]
    return statistics.median(times) if times else None


def teacher_scores(name: str) -> Dict[str, Tuple[float, float]]:
    """``{dataset: (psnr, ssim)}`` of the teacher (its last validation)."""
    return {dataset: (float(psnr), float(ssim)) for _, dataset, psnr, ssim in TEACHER.findall(read_log(name))}
