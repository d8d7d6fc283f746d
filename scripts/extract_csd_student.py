"""Extract the CSD student (CSSR-Net) of a CSD checkpoint as an ordinary BasicSR network, and measure it.

    python scripts/extract_csd_student.py -opt options/train/CSD/train_CSD_EDSR_x4.yml \\
        --checkpoint experiments/CSD_EDSR_x4/models/net_g_latest.pth --out results/CSD_EDSR_x4_student.pth

Reads ``network_g`` (``SlimEDSR`` / ``SlimRCAN`` / ``SlimCARN``) of the option file, loads the checkpoint into it
(``--param-key``, default ``params``; ``params_ema`` for an EMA run), and writes the network of width
``int(C * width)`` (``--width``, default ``train.csd.width_mult`` of the file) as a plain ``EDSR`` / ``RCAN`` /
``CARN``: ``<out>`` (``{'params': state_dict}``, loads with ``strict=True``) and ``<out>.yml`` (its ``network_g``
options). Checks on a random LR input of ``--check-size`` that it equals the slimmable network at that width (max
abs difference below 1e-5), then measures the full network (width 1.0) and the student with the efficiency
benchmark (``kdplugins/utils/efficiency.py``, LR input ``--input-size``) and prints the parameter compression and
the speed-up (ratio of median forward times, measured in this run).
"""
import argparse
import os
from typing import Tuple

import kdplugins  # noqa: F401  (shims and registration before basicsr is used)

# isort: split
import torch
import yaml
from basicsr.archs import build_network
from torch import nn

from kdplugins.archs.slimmable import SlimmableMixin, extract_student
from kdplugins.utils import efficiency

TOLERANCE = 1e-5


def load_slim_network(opt_path: str, checkpoint: str, param_key: str) -> Tuple[nn.Module, dict]:
    """The slimmable ``network_g`` of ``opt_path`` with the weights of ``checkpoint``, and the whole options."""
    with open(opt_path) as f:
        opt = yaml.safe_load(f)
    net = build_network(dict(opt['network_g']))
    if not isinstance(net, SlimmableMixin):
        raise SystemExit(f'{opt_path}: network_g is {opt["network_g"]["type"]}, not a slimmable arch (SlimEDSR, '
                         'SlimRCAN, SlimCARN).')
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    if param_key:
        if param_key not in state:
            raise SystemExit(f'{checkpoint} has no {param_key!r} entry (keys: {sorted(state)}); set --param-key.')
        state = state[param_key]
    net.load_state_dict(state, strict=True)
    return net.eval(), opt


def extract_and_check(net: nn.Module, width: float, check_size: int) -> Tuple[dict, dict, float]:
    """Options and state dict of the student, built and loaded strictly, and its max abs difference to ``net``."""
    options, state = extract_student(net, width)
    student = build_network(dict(options)).eval()
    student.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, check_size, check_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (student(x) - net(x, width_mult=width)).abs().max().item()
    if difference >= TOLERANCE:
        raise SystemExit(f'The extracted student differs from the slimmable network at width {width} by {difference} '
                         f'(tolerance {TOLERANCE}).')
    return options, state, difference


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='option file of the CSD run (its network_g)')
    parser.add_argument('--checkpoint', required=True, help='net_g_<iter>.pth of the run')
    parser.add_argument(
        '--param-key', default='params', help="entry of the checkpoint (default 'params'; '' for a "
        'bare state dict)')
    parser.add_argument('--width', type=float, default=None, help='student width (default: train.csd.width_mult)')
    parser.add_argument('--out', required=True, help='student checkpoint to write (.pth); options go to .yml')
    parser.add_argument('--check-size', type=int, default=32, help='side of the LR input of the equality check')
    parser.add_argument('--input-size', type=int, default=128, help='side of the LR input of the efficiency runs')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto')
    parser.add_argument('--repeat', type=int, default=5, help='timed forward passes per network')
    parser.add_argument('--warmup', type=int, default=1, help='untimed forward passes first')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    net, opt = load_slim_network(args.opt, args.checkpoint, args.param_key)
    width = args.width if args.width is not None else ((opt.get('train') or {}).get('csd') or {}).get(
        'width_mult', 0.25)
    options, state, difference = extract_and_check(net, width, args.check_size)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save({'params': state}, args.out)
    options_path = os.path.splitext(args.out)[0] + '.yml'
    with open(options_path, 'w') as f:
        yaml.safe_dump(options, f, sort_keys=False)
    print(f'Student of width {width}: {efficiency.arch_label(options)}; max abs difference: {difference:.3g} '
          f'(< {TOLERANCE:g}). Wrote {args.out} and {options_path}.')
    device = efficiency.resolve_device(args.device)
    teacher_options = net.plain_options(1.0)
    reports = [
        efficiency.measure(f'{label} {efficiency.arch_label(o)}', o, args.input_size, device, args.repeat, args.warmup)
        for label, o in (('teacher (width 1.0)', teacher_options), (f'student (width {width})', options))
    ]
    print(efficiency.markdown_table(reports))
    teacher, student = reports
    print(f'compression: {teacher.counts.params / student.counts.params:.2f}x ({teacher.counts.params:,} -> '
          f'{student.counts.params:,} parameters); speed-up: '
          f'{teacher.runtime_median_s / student.runtime_median_s:.2f}x (median forward time, {teacher.device}, LR '
          f'{args.input_size}x{args.input_size})')


if __name__ == '__main__':
    main()
