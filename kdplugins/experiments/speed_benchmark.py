"""What the speed benchmarks measure of ``train.speed`` (the training-step settings of :mod:`kdplugins.distill.speed`):
named settings of the step benchmark (``scripts/benchmark_train_step.py --speed``, ``scripts/check_gpu.py``) and how
far and how fast the teacher runs in each precision (``scripts/benchmark_teacher_precision.py``). docs/training.md
"Faster steps" gives the measurements."""
import copy
import statistics
import time
import torch
from torch import nn

from kdplugins.distill.speed import DTYPES
from kdplugins.utils.padding import forward_padded

# named settings of the step benchmark, combined with '+'
SPEED_PRESETS = {
    'channels_last': {
        'channels_last': True
    },
    'bf16': {
        'precision': 'bf16'
    },
    'fp16': {
        'precision': 'fp16'
    },
    'teacher-bf16': {
        'teacher_precision': 'bf16'
    },
    'teacher-fp16': {
        'teacher_precision': 'fp16'
    },
    'compile': {
        'compile': ['student', 'teacher']
    },
}


def speed_preset(name: str) -> dict:
    """``train.speed`` of a preset name or of names joined by '+' (``channels_last+teacher-bf16``)."""
    speed = {}
    for part in name.split('+'):
        if part not in SPEED_PRESETS:
            raise ValueError(f'Unknown speed setting {part!r}; known: {", ".join(SPEED_PRESETS)} (join with +).')
        speed.update(SPEED_PRESETS[part])
    return speed


def teacher_psnr_by_precision(teacher: nn.Module,
                              dataset,
                              scale: int,
                              precisions=tuple(DTYPES),
                              device: torch.device = torch.device('cpu')) -> dict:
    """Mean PSNR-Y (border ``scale``, outputs rounded to uint8, as basicsr validates) of ``teacher`` over a paired
    dataset, with its weights and forward in each precision: ``{precision: psnr}``. The teacher is a
    :class:`kdplugins.distill.teacher.FrozenTeacher` (it takes the input in its own precision, returns fp32)."""
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img
    samples = [dataset[i] for i in range(len(dataset))]
    results = {}
    for precision in precisions:
        net = copy.deepcopy(teacher).to(device=device, dtype=DTYPES[precision])
        psnrs = []
        for sample in samples:
            with torch.no_grad():
                out = forward_padded(net, sample['lq'][None].to(device), scale).float().cpu()
            gt = sample['gt'][None][..., :out.shape[-2], :out.shape[-1]]
            psnrs.append(calculate_psnr(tensor2img(out), tensor2img(gt), crop_border=scale, test_y_channel=True))
        results[precision] = sum(psnrs) / len(psnrs)
    return results


def teacher_forward_times(teacher: nn.Module, lq: torch.Tensor, precisions=tuple(DTYPES), rounds: int = 5) -> dict:
    """Median seconds of one no-grad forward of ``teacher`` on ``lq`` in each precision, the precisions taking turns
    (``rounds`` rounds after one untimed forward each): ``{precision: seconds}``."""
    nets = {p: copy.deepcopy(teacher).to(dtype=DTYPES[p]) for p in precisions}
    times = {p: [] for p in precisions}
    with torch.no_grad():
        for net in nets.values():
            net(lq)
        for _ in range(rounds):
            for precision, net in nets.items():
                start = time.perf_counter()
                net(lq)
                times[precision].append(time.perf_counter() - start)
    return {p: statistics.median(t) for p, t in times.items()}
