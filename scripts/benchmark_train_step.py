"""Time the training step of a model given by options against the same student trained alone (SRModel).

    python scripts/benchmark_train_step.py -opt options/train/KD/train_KD_MSRResNet_x2_demo.yml --repeat 20 --warmup 3

Builds the model and its training dataloader from the options (as ``python -m kdplugins.train`` does, without
creating an experiment folder), runs ``feed_data`` + ``optimize_parameters`` on real batches and prints the median
step time of the given model, of ``SRModel`` with the same ``network_g``/``pixel_opt``/``optim_g``, and their ratio.
"""
import argparse
import copy
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kdplugins  # noqa: E402,F401
import torch  # noqa: E402
import yaml  # noqa: E402
from basicsr.data import build_dataloader, build_dataset  # noqa: E402
from basicsr.models import build_model  # noqa: E402
from basicsr.utils.options import ordered_yaml  # noqa: E402


def load_options(path: str, root: str) -> dict:
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


def scratch_options(opt: dict) -> dict:
    scratch = copy.deepcopy(opt)
    scratch['model_type'] = 'SRModel'
    scratch['train'] = {
        k: v
        for k, v in scratch['train'].items() if k in ('optim_g', 'scheduler', 'pixel_opt', 'ema_decay')
    }
    scratch['train'].setdefault('pixel_opt', {'type': 'L1Loss', 'loss_weight': 1.0})
    return scratch


def time_steps(opt: dict, batches: list, warmup: int) -> list:
    model = build_model(copy.deepcopy(opt))
    times = []
    for i, batch in enumerate(batches, start=1):
        start = time.perf_counter()
        model.feed_data(batch)
        model.optimize_parameters(i)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if i > warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True)
    parser.add_argument('--repeat', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as root:
        opt = load_options(args.opt, root)
        dataset_opt = opt['datasets']['train']
        loader = build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=opt['num_gpu'], seed=0)
        batches = []
        while len(batches) < args.repeat + args.warmup:
            batches.extend(loader)
        batches = batches[:args.repeat + args.warmup]
        model_s = statistics.median(time_steps(opt, batches, args.warmup))
        scratch_s = statistics.median(time_steps(scratch_options(opt), batches, args.warmup))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f'CPU ({torch.get_num_threads()} threads)'
    print(f'device: {device}; median of {args.repeat} steps after {args.warmup} warm-up')
    print(f"{opt['model_type']}: {model_s * 1000:.2f} ms/step")
    print(f'SRModel (student alone): {scratch_s * 1000:.2f} ms/step')
    print(f'ratio: {model_s / scratch_s:.3f}')


if __name__ == '__main__':
    main()
