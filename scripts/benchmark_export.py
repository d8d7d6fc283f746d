"""Exported networks in onnxruntime against PyTorch, on the CPU, on the AIM 2020 input (one LR image of 3x256x256).

    python scripts/benchmark_export.py -opt options/train/MemSR/train_MemSR_PlainS_f32_x4.yml \\
        --arch EDSR --arch-opt num_in_ch=3 num_out_ch=3 num_feat=64 num_block=32 upscale=4 res_scale=0.1 \\
        --name CSD_EDSR_x4_student --repeat 5 --warmup 1

``-opt`` takes ``network_g`` of an option file (or a .yml of network options, e.g. the one
``scripts/extract_csd_student.py`` writes) and ``--arch`` a registered arch with ``--arch-opt key=value ...``;
``--checkpoint`` and ``--name`` apply to the network before them (default: random weights, which do not change
runtime or memory). Each network is written to ``--out-dir`` as .pth, .yml and .onnx, the ONNX file checked against
PyTorch, and both backends are measured in fresh processes (kdplugins/deploy/benchmark.py, docs/efficiency.md "After
export"). Prints a Markdown table and writes ``export_benchmark.md`` and ``.json`` to ``--out-dir``.
"""
import argparse
import json
import os
import shlex
import sys
from typing import List

import kdplugins  # noqa: F401  (shims and registration before basicsr is used)

# isort: split
import torch

from kdplugins.deploy import benchmark
from kdplugins.deploy.network import load_network, network_options, read_options_file
from kdplugins.utils import efficiency


class _AddOptionFile(argparse.Action):

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.specs.append({'opt_file': value})


class _AddArch(argparse.Action):

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.specs.append({'options': {'type': value}})


class _ForLast(argparse.Action):
    """``--arch-opt``, ``--checkpoint`` and ``--name``: attach to the network given just before."""

    def __call__(self, parser, namespace, values, option_string=None):
        if not namespace.specs:
            parser.error(f'{option_string} must follow the -opt or --arch it applies to.')
        spec = namespace.specs[-1]
        if option_string == '--arch-opt':
            if 'options' not in spec:
                parser.error('--arch-opt must follow the --arch it applies to.')
            spec['options'].update(efficiency.parse_arch_options(values))
        else:
            spec[option_string.lstrip('-')] = values


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(specs=[])
    parser.add_argument('-opt', action=_AddOptionFile, metavar='YML', help='option file (repeatable)')
    parser.add_argument('--arch', action=_AddArch, metavar='NAME', help='registered arch (repeatable)')
    parser.add_argument('--arch-opt', action=_ForLast, nargs='+', metavar='KEY=VALUE', help='arguments of --arch')
    parser.add_argument('--checkpoint', action=_ForLast, help='weights of the preceding network (default: random)')
    parser.add_argument('--name', action=_ForLast, help='row and file name of the preceding network')
    parser.add_argument('--input-size', type=int, default=256, help='LR height and width (default: 256)')
    parser.add_argument('--repeat', type=int, default=10, help='timed inferences (default: 10)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed inferences after the first (default: 2)')
    parser.add_argument(
        '--threads',
        type=int,
        default=torch.get_num_threads(),
        help='intra-op threads of both backends '
        '(default: torch.get_num_threads(), %(default)s here)')
    parser.add_argument('--out-dir', default=os.path.join('results', 'export_benchmark'))
    args = parser.parse_args(argv)
    if not args.specs:
        parser.error('give at least one network: -opt X.yml or --arch NAME [--arch-opt k=v ...].')
    if args.repeat < 1 or args.warmup < 0 or args.threads < 1:
        parser.error('--repeat and --threads must be at least 1, --warmup at least 0.')
    return args


def network_of(spec: dict) -> benchmark.BenchmarkNetwork:
    """The network of one ``-opt`` / ``--arch`` with its ``--checkpoint`` and ``--name``."""
    if 'opt_file' in spec:
        opt = read_options_file(spec['opt_file'])
        options, name = network_options(opt, spec['opt_file'])
        imports = list(opt.get('custom_imports') or [])
    else:
        options, name, imports = spec['options'], spec['options']['type'], []
    name = spec.get('name') or name
    label = f'{name}: {efficiency.arch_label(options)}'
    if not spec.get('checkpoint'):
        return benchmark.random_network(label, name, options, imports)
    deployed = load_network(spec['opt_file'], spec['checkpoint']) if 'opt_file' in spec else None
    if deployed is None:
        raise SystemExit('--checkpoint needs a -opt file (the network options it was trained with).')
    return benchmark.BenchmarkNetwork(label, name, options, deployed.net, imports, spec['checkpoint'])


def main(argv: List[str]) -> None:
    args = parse_args(argv)
    records = [
        benchmark.measure(network_of(spec), args.out_dir, args.input_size, args.repeat, args.warmup, args.threads)
        for spec in args.specs
    ]
    table = benchmark.markdown_table(records)
    command = 'python scripts/benchmark_export.py ' + shlex.join(argv)
    print(table)
    with open(os.path.join(args.out_dir, 'export_benchmark.md'), 'w') as f:
        f.write(f'Command: `{command}`\n\n{table}')
    with open(os.path.join(args.out_dir, 'export_benchmark.json'), 'w') as f:
        json.dump({'command': command, 'networks': records}, f, indent=2)
        f.write('\n')
    print(f'Wrote {args.out_dir}/export_benchmark.md and export_benchmark.json')


if __name__ == '__main__':
    main(sys.argv[1:])
