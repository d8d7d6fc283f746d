"""MemSR winning initialization (Sec. 3.3, Algorithm 1) of a plain student from a trained teacher, computed once.

    python scripts/memsr_init.py -opt options/train/MemSR/train_MemSR_PlainS_x4.yml
    python scripts/memsr_init.py -opt options/train/MemSR/train_MemSR_PlainS_x4.yml --theta 0.05 --out plainx.pth

Reads the teacher (``network_t``, ``path.pretrain_network_t`` / ``param_key_t`` / ``strip_prefix_t``), the student
(``network_g``: ``widths`` or ``preset``, and ``one_pad``, the paper's plain form that the initialization is solved
for; ``--theta`` finds the widths per layer instead, Plain-X, Eq. 15) and ``train.memsr.offset`` of a MemSRModel
option file, and writes one checkpoint, by default to the file the run loads,
``path.pretrain_network_g`` (else ``train.memsr.bridges``):

* ``params``: the student's PlainSR weights (BasicSR's format; ``path.pretrain_network_g`` loads them),
* ``bridges``: the 1x1 convs ``M_1..M_n`` (``train.memsr.bridges`` loads them),
* ``memsr``: widths, teacher widths, Eq. 15 errors, settings and the student's ``network_g`` options.

Training and resume then never recompute it. With ``--theta``, paste the printed ``widths`` into ``network_g``.
"""
import argparse
import os
import sys
import time
from typing import List

import kdplugins  # noqa: F401  (shims and registration before basicsr is used)

# isort: split
import torch
import yaml

from kdplugins.archs.plainsr_arch import preset_widths
from kdplugins.distill.teacher import build_teacher
from kdplugins.memsr.winning_init import winning_initialization


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='MemSRModel option file (network_t, its checkpoint, network_g).')
    parser.add_argument('--out', help='output .pth (default: path.pretrain_network_g, else train.memsr.bridges).')
    parser.add_argument('--theta', type=float, help='dynamic widths: Eq. 15 threshold per layer (0.05, 0.14).')
    parser.add_argument(
        '--reference',
        choices=['centred', 'raw'],
        default='centred',
        help="denominator of Eq. 15 (default centred; 'raw' is ||F_T|| including the offset C).")
    parser.add_argument('--n-samples', type=int, default=16, help='uniformly random inputs F_0 (default 16).')
    parser.add_argument('--patch-size', type=int, default=48, help='their height and width (default 48).')
    parser.add_argument('--beta', type=float, default=3.0, help='mean-shift coefficient of Algorithm 1 (default 3).')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=0, help='torch threads (default: torch decides).')
    return parser.parse_args(argv)


def student_widths(opt: dict) -> List[int]:
    network_g = opt.get('network_g') or {}
    if network_g.get('type') != 'PlainSR':
        raise ValueError(f'{network_g.get("type")!r}: network_g must be a PlainSR student.')
    return preset_widths(network_g.get('preset'), network_g.get('widths'))


def output_path(opt: dict, out: str) -> str:
    path = out or opt.get('path', {}).get('pretrain_network_g') or opt.get('train', {}).get('memsr', {}).get('bridges')
    if not path:
        raise ValueError('No output file: give --out, or set path.pretrain_network_g (or train.memsr.bridges).')
    return path


def main(argv: List[str]) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with open(args.opt) as f:
        opt = yaml.safe_load(f)
    if float((opt.get('train') or {}).get('teacher_img_range', 1.0)) != 1.0:
        raise ValueError('train.teacher_img_range must be 1 for MemSR: convert a [0, 255] teacher with its own '
                         'img_range option (EDSR, PixelShuffleEDSR) instead.')
    out = output_path(opt, args.out)
    widths = None if args.theta is not None else student_widths(opt)
    offset = float(((opt.get('train') or {}).get('memsr') or {}).get('offset', 1000.0))
    teacher = build_teacher(opt, torch.device('cpu')).net
    start = time.perf_counter()
    one_pad = bool(opt['network_g'].get('one_pad', False))
    init = winning_initialization(
        teacher,
        widths=widths,
        theta=args.theta,
        n_samples=args.n_samples,
        patch_size=args.patch_size,
        beta=args.beta,
        offset=offset,
        reference=args.reference,
        seed=args.seed,
        one_pad=one_pad,
        log=print)
    meta = {
        'widths': init.widths,
        'teacher_widths': init.teacher_widths,
        'errors': init.errors,
        'network_g': init.student_options,
        'seconds': time.perf_counter() - start,
        'threads': torch.get_num_threads(),
        **init.settings
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    torch.save({'params': init.student_state, 'bridges': init.bridge_modules().state_dict(), 'memsr': meta}, out)
    print(f'winning initialization of {len(init.widths)} layers in {meta["seconds"]:.1f} s '
          f'({torch.get_num_threads()} threads), written to {out}')
    print('network_g: ' + yaml.safe_dump(init.student_options, default_flow_style=True, width=200).strip())


if __name__ == '__main__':
    main(sys.argv[1:])
