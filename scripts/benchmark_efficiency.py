"""Efficiency of SR networks under the AIM 2020 efficient SR protocol (definitions: kdplugins/utils/efficiency.py).

Networks, measured in command-line order, one table row each:

    python scripts/benchmark_efficiency.py -opt options/train/KD/train_KD_MSRResNet_x2_demo.yml --network network_g
    python scripts/benchmark_efficiency.py --arch MSRResNet --arch-opt num_feat=64 num_block=16 upscale=4 \\
        --arch RFDN --input-size 256 --repeat 10 --warmup 2

``-opt`` takes the sections named by ``--network`` (default ``network_g``) of a BasicSR option file; ``--arch``
takes any registered arch, with ``--arch-opt key=value ...`` (YAML scalars) applying to the ``--arch`` before it.
Prints a Markdown table and writes ``efficiency.md`` and ``efficiency.json`` to ``--out-dir``; with ``--psnr`` (one
value per row) also ``tradeoff.png``: PSNR against runtime, marker size = peak memory.
"""
import argparse
import json
import os
import shlex
import sys
from typing import List, Tuple

import kdplugins  # noqa: F401  (shims and registration before basicsr is used)

# isort: split
from basicsr.utils.registry import ARCH_REGISTRY

from kdplugins.runtime.option_checks import unknown_type_message
from kdplugins.utils import efficiency
from kdplugins.utils.plots import tradeoff_plot


class _AddOptionFile(argparse.Action):

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.specs.append({'opt_file': value})


class _AddArch(argparse.Action):

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.specs.append({'type': value})


class _AddArchOptions(argparse.Action):

    def __call__(self, parser, namespace, values, option_string=None):
        if not namespace.specs or 'type' not in namespace.specs[-1]:
            parser.error('--arch-opt must follow the --arch it applies to.')
        namespace.specs[-1].update(efficiency.parse_arch_options(values))


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(specs=[])
    parser.add_argument('-opt', action=_AddOptionFile, metavar='YML', help='BasicSR option file (repeatable).')
    parser.add_argument(
        '--network',
        nargs='+',
        default=['network_g'],
        metavar='SECTION',
        help='sections of every -opt file to measure (default: network_g).')
    parser.add_argument('--arch', action=_AddArch, metavar='NAME', help='registered arch (repeatable).')
    parser.add_argument(
        '--arch-opt', action=_AddArchOptions, nargs='+', metavar='KEY=VALUE', help='arguments of the preceding --arch.')
    parser.add_argument('--input-size', type=int, default=256, help='LR input height and width (default: 256).')
    parser.add_argument('--in-channels', type=int, default=3, help='LR input channels (default: 3).')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto')
    parser.add_argument('--repeat', type=int, default=10, help='timed forward passes (default: 10).')
    parser.add_argument('--warmup', type=int, default=2, help='untimed forward passes first (default: 2).')
    parser.add_argument('--out-dir', default=os.path.join('results', 'efficiency'))
    parser.add_argument(
        '--psnr',
        nargs='+',
        type=float,
        metavar='DB',
        help='PSNR of each network, in table order: also writes tradeoff.png (PSNR vs runtime, '
        'marker size = peak memory).')
    parser.add_argument(
        '--psnr-label', default='PSNR [dB]', help='y axis title of the plot, e.g. "Set5 x4 PSNR-Y [dB]"')
    args = parser.parse_args(argv)
    if not args.specs:
        parser.error('give at least one network: -opt X.yml or --arch NAME [--arch-opt k=v ...].')
    if args.repeat < 1 or args.warmup < 0:
        parser.error('--repeat must be at least 1 and --warmup at least 0.')
    return args


def named_networks(args: argparse.Namespace) -> List[Tuple[str, dict]]:
    """(row name, network options) for every network asked for, in command-line order."""
    networks = []
    for spec in args.specs:
        if 'opt_file' not in spec:
            networks.append((efficiency.arch_label(spec), spec))
            continue
        for section in args.network:
            options = efficiency.network_options_from_yaml(spec['opt_file'], section)
            networks.append((f"{options['type']} ({os.path.basename(spec['opt_file'])}: {section})", options))
    return networks


def main(argv: List[str]) -> None:
    args = parse_args(argv)
    device = efficiency.resolve_device(args.device)
    networks = named_networks(args)
    for name, options in networks:
        if options['type'] not in ARCH_REGISTRY:
            raise SystemExit(unknown_type_message(ARCH_REGISTRY, options['type'], f'network {name}'))
    if args.psnr and len(args.psnr) != len(networks):
        raise SystemExit(f'--psnr gives {len(args.psnr)} values for {len(networks)} networks: one per table row.')
    reports = efficiency.measure_in_turns(networks, args.input_size, device, args.repeat, args.warmup, args.in_channels)
    table = efficiency.markdown_table(reports)
    command = 'python scripts/benchmark_efficiency.py ' + shlex.join(argv)
    print(table)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, 'efficiency.md'), 'w') as f:
        f.write(f'Command: `{command}`\n\n{table}')
    with open(os.path.join(args.out_dir, 'efficiency.json'), 'w') as f:
        json.dump(efficiency.json_document(reports, command), f, indent=2)
        f.write('\n')
    print(f'Wrote {args.out_dir}/efficiency.md and efficiency.json')
    if args.psnr:
        write_tradeoff_plot(reports, args.psnr, args.psnr_label, os.path.join(args.out_dir, 'tradeoff.png'))


def write_tradeoff_plot(reports: list, psnrs: List[float], psnr_label: str, path: str) -> None:
    points = [(report.name.split('(')[0], report.runtime_median_s * 1000, psnr, report.peak_memory_bytes / 2**20)
              for report, psnr in zip(reports, psnrs)]
    runtime_label = f'runtime [ms] ({reports[0].device}, LR input {"x".join(map(str, reports[0].input_shape[1:]))})'
    tradeoff_plot(points, path, psnr_label, runtime_label)
    print(f'Wrote {path}')


if __name__ == '__main__':
    main(sys.argv[1:])
