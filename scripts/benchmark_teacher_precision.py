"""How far the teacher's precision (``train.speed.teacher_precision``) moves a pretrained teacher's PSNR-Y.

    python scripts/benchmark_teacher_precision.py options/test/teachers/test_RFDN_x4.yml [more test option files]

For each option file (``network_g``, ``path.pretrain_network_g``, the first test set): PSNR-Y in fp32, bf16 and fp16
(:func:`kdplugins.experiments.speed_benchmark.teacher_psnr_by_precision`), the change against fp32, and the median
time of one teacher forward on a training batch (``--batch`` LR patches of ``--size``; precisions in turns) relative
to fp32.
Run from the repository root (the files' ``../shared/data`` paths).
"""
import argparse
import torch
import yaml

import kdplugins  # noqa: F401  (shims and registration before basicsr is used)

# isort: split
from basicsr.archs import build_network
from basicsr.data import build_dataset

from kdplugins.distill.speed import DTYPES
from kdplugins.distill.teacher import FrozenTeacher
from kdplugins.experiments.speed_benchmark import teacher_forward_times, teacher_psnr_by_precision
from kdplugins.utils.checkpoint import load_state_dict_checked, read_state_dict
from kdplugins.utils.efficiency import device_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('options', nargs='+', help='test option files of pretrained networks')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (default: torch decides)')
    parser.add_argument('--batch', type=int, default=16, help='LR patches per timed forward (16)')
    parser.add_argument('--size', type=int, default=48, help='their side (48)')
    parser.add_argument('--rounds', type=int, default=5, help='timed rounds (5)')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'Device: {device_name(torch.device("cpu"))}; forward time: median of {args.rounds} rounds, batch '
          f'{args.batch} x 3 x {args.size} x {args.size}, relative to fp32.\n')
    print('| Teacher | Test set | ' + ' | '.join(f'{p} PSNR-Y [dB]' for p in DTYPES) +
          ' | bf16 - fp32 | fp16 - fp32 | fp32 forward [ms] | bf16 time / fp32 | fp16 time / fp32 |')
    print('|---|---|' + '---:|' * (len(DTYPES) + 5))
    for path in args.options:
        with open(path) as f:
            opt = yaml.safe_load(f)
        net = build_network(dict(opt['network_g']))
        path_opt = opt['path']
        state = read_state_dict(path_opt['pretrain_network_g'], path_opt.get('param_key_g', 'params'), 'module.',
                                'path.pretrain_network_g')
        load_state_dict_checked(net, state, strict=True, what=opt['name'])
        dataset_opt = dict(next(iter(opt['datasets'].values())), phase='val', scale=opt['scale'])
        teacher = FrozenTeacher(net)
        psnr = teacher_psnr_by_precision(teacher, build_dataset(dataset_opt), int(opt['scale']))
        times = teacher_forward_times(teacher, torch.rand(args.batch, 3, args.size, args.size), rounds=args.rounds)
        cells = [f"{opt['network_g']['type']} x{opt['scale']}", dataset_opt['name']]
        cells += [f'{psnr[p]:.4f}' for p in DTYPES]
        cells += [f"{psnr['bf16'] - psnr['fp32']:+.4f}", f"{psnr['fp16'] - psnr['fp32']:+.4f}"]
        cells += [f"{times['fp32'] * 1e3:.1f}", f"{times['bf16'] / times['fp32']:.2f}"]
        cells += [f"{times['fp16'] / times['fp32']:.2f}"]
        print('| ' + ' | '.join(cells) + ' |', flush=True)


if __name__ == '__main__':
    main()
