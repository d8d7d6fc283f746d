"""Time the training step of models given by options against the same student trained alone (SRModel).

    python scripts/benchmark_train_step.py -opt options/train/KD/train_KD_MSRResNet_x2_demo.yml --repeat 20 --warmup 3
    python scripts/benchmark_train_step.py -opt options/train/AugKD/train_AugKD_RFDN_EDSR_x4.yml \
        options/train/AugKD/train_KD_RFDN_EDSR_x4.yml --rounds 3

Builds each model and the training dataloader of the first option file (as ``python -m kdplugins.train`` does,
without creating an experiment folder), and runs ``feed_data`` + ``optimize_parameters`` on the same real batches.
The models take turns for ``--rounds`` rounds of ``--repeat`` steps each (so that a slow phase of a shared machine
hits all of them), after ``--warmup`` untimed steps each. Prints the median step time of every model, of ``SRModel``
with the first file's ``network_g``/``pixel_opt``/``optim_g``, and the ratios: to the student alone with basicsr's
defaults (``ratio``) and, with several files or ``--speed``, to the first file's model (``ratio to <first>``).
``--speed channels_last bf16 teacher-bf16 channels_last+teacher-bf16 ...`` adds the first file's model with these
``train.speed`` settings (:data:`kdplugins.experiments.speed_benchmark.SPEED_PRESETS`).
"""
import argparse
import copy
import os
import statistics
import tempfile
import time

import kdplugins  # noqa: F401  (shims before basicsr is imported)

# isort: split
import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model

from kdplugins.experiments.speed_benchmark import speed_preset
from kdplugins.runtime.host_memory import keep_freed_host_memory
from kdplugins.utils.option_files import apply_overrides, load_train_options

BASICSR_SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')  # what SRModel builds


def scratch_options(opt: dict) -> dict:
    """The student of ``opt`` alone in basicsr's ``SRModel``; a schedule SRModel lacks (MemSR's OneCycleLR) becomes
    a constant learning rate, which costs the same per step."""
    scratch = copy.deepcopy(opt)
    scratch['model_type'] = 'SRModel'
    scratch['train'] = {
        k: v
        for k, v in scratch['train'].items() if k in ('optim_g', 'scheduler', 'pixel_opt', 'ema_decay')
    }
    scratch['train'].setdefault('pixel_opt', {'type': 'L1Loss', 'loss_weight': 1.0})
    if scratch['train'].get('scheduler', {}).get('type') not in BASICSR_SCHEDULERS:
        scratch['train']['scheduler'] = {'type': 'MultiStepLR', 'milestones': [2**31], 'gamma': 1.0}
    return scratch


PEAK_MEMORY = {}


def steps(model, batches: list, first_iter: int) -> list:
    """Times of ``feed_data`` + ``optimize_parameters`` on each batch (CUDA synchronized). On CUDA,
    ``PEAK_MEMORY[model]`` keeps the step memory: the peak allocated during the steps minus what was allocated before
    them (activations, gradients, temporaries; the weights of every model built are allocated before)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    times = []
    for i, batch in enumerate(batches, start=first_iter):
        start = time.perf_counter()
        model.feed_data(batch)
        model.optimize_parameters(i)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if torch.cuda.is_available():
        PEAK_MEMORY[model] = max(PEAK_MEMORY.get(model, 0), torch.cuda.max_memory_allocated() - before)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, nargs='+', help='option files; the first gives data and student')
    parser.add_argument('--repeat', type=int, default=20, help='timed steps per model and round')
    parser.add_argument('--warmup', type=int, default=3, help='untimed steps per model before the rounds')
    parser.add_argument('--rounds', type=int, default=1)
    parser.add_argument(
        '--set', nargs='*', default=[], help='option overrides, as --force_yml (e.g. train:total_iter=10)')
    parser.add_argument('--speed', nargs='*', default=[], help='train.speed presets of the first file to add')
    args = parser.parse_args()
    keep_freed_host_memory()  # as python -m kdplugins.train does
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as root:
        options = [apply_overrides(load_train_options(path, root), args.set) for path in args.opt]
        datasets = [build_dataset(opt['datasets']['train']) for opt in options]
        dataset_opt = options[0]['datasets']['train']
        loader = build_dataloader(datasets[0], dataset_opt, num_gpu=options[0]['num_gpu'], seed=0)
        batches = []
        while len(batches) < args.repeat + args.warmup:
            batches.extend(loader)
        warmup, timed = batches[:args.warmup], batches[args.warmup:args.repeat + args.warmup]
        labels = [f"{opt['model_type']} ({os.path.basename(path)})" for opt, path in zip(options, args.opt)]
        for name in args.speed:
            options.append(copy.deepcopy(options[0]))
            options[-1]['train']['speed'] = speed_preset(name)
            labels.append(f'{labels[0]} speed {name}')
        labels.append('SRModel (student alone)')
        models = [build_model(copy.deepcopy(opt)) for opt in options + [scratch_options(options[0])]]
        times = {label: [] for label in labels}
        for label, model in zip(labels, models):
            steps(model, warmup, 1)
        for round_index in range(args.rounds):
            for label, model in zip(labels, models):
                times[label] += steps(model, timed, args.warmup + 1 + round_index * args.repeat)
    medians = {label: statistics.median(values) for label, values in times.items()}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f'CPU ({torch.get_num_threads()} threads)'
    print(f'device: {device}; median of {args.rounds} x {args.repeat} steps after {args.warmup} warm-up')
    scratch = medians[labels[-1]]
    for label in labels:
        line = f'{label}: {medians[label] * 1000:.2f} ms/step; ratio: {medians[label] / scratch:.3f}'
        if len(labels) > 2 and label != labels[0]:
            line += f'; ratio to {labels[0]}: {medians[label] / medians[labels[0]]:.3f}'
        if torch.cuda.is_available():
            line += f'; step memory: {PEAK_MEMORY[models[labels.index(label)]] / 2**20:.0f} MiB'
        print(line)


if __name__ == '__main__':
    main()
