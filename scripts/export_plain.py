"""Export a trained MemSR plain student for deployment and compare its efficiency with its teacher's.

    python scripts/export_plain.py -opt options/train/MemSR/train_MemSR_PlainS_x4.yml \\
        --weights experiments/MemSR_PlainS_x4/models/net_g_latest.pth --out exported/plain_s_x4.pth
    python scripts/export_plain.py -opt options/train/MemSR/train_MemSR_PlainS_x4.yml --init-only --input-size 128

Writes ``--out``: ``{'params': state_dict, 'network_g': options}`` of the PlainSR (plain 3x3 convs with biases, in-place
ReLUs, the pixel-shuffle tail: a standard BasicSR checkpoint, ``PlainSR(**network_g)`` loads it strictly), checks
that the loaded network reproduces the trained one bit for bit, then measures student (``network_g``), teacher
(``network_t``) and, with ``--with-plain-teacher``, the teacher's exact plain equivalent, with
:mod:`kdplugins.utils.efficiency` (AIM 2020 counting, peak memory, median runtime), and prints the table with the
student/teacher memory and runtime ratios. ``--init-only`` exports the winning initialization
(``path.pretrain_network_g``) instead of trained weights.
"""
import argparse
import os
import sys
from typing import List

import kdplugins  # noqa: F401  (shims and registration before basicsr is used)

# isort: split
import torch
import yaml
from basicsr.archs import build_network

from kdplugins.memsr.convert import convert_edsr, plain_sr_options, to_plain_sr
from kdplugins.utils import efficiency
from kdplugins.utils.checkpoint import load_state_dict_checked, read_state_dict


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='MemSRModel option file (network_g, network_t).')
    parser.add_argument('--weights', help='trained student checkpoint (net_g_*.pth).')
    parser.add_argument('--init-only', action='store_true', help='export path.pretrain_network_g instead.')
    parser.add_argument('--param-key', default='params', help='params or params_ema (default params).')
    parser.add_argument('--out', help='exported checkpoint (default: none written).')
    parser.add_argument('--input-size', type=int, default=256, help='LR side of the efficiency input (256).')
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument(
        '--with-plain-teacher',
        action='store_true',
        help="also measure the teacher's plain "
        'equivalent (Prop. 3.6, random weights of the same shapes when the teacher has none).')
    parser.add_argument('--skip-efficiency', action='store_true')
    return parser.parse_args(argv)


def load_student(opt: dict, args: argparse.Namespace) -> torch.nn.Module:
    weights = opt['path'].get('pretrain_network_g') if args.init_only else args.weights
    if not weights:
        raise ValueError('Give --weights (a trained net_g_*.pth) or --init-only (path.pretrain_network_g).')
    net = build_network(dict(opt['network_g'])).eval()
    load_state_dict_checked(net, read_state_dict(weights, args.param_key, 'module.', '--weights'), what='student')
    return net


def export(net: torch.nn.Module, options: dict, path: str) -> None:
    """Save, reload strictly and check the reloaded network's output bit for bit."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({'params': net.state_dict(), 'network_g': options}, path)
    loaded = torch.load(path, map_location='cpu', weights_only=True)
    rebuilt = build_network(dict(loaded['network_g'])).eval()
    rebuilt.load_state_dict(loaded['params'], strict=True)
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        if not torch.equal(net(x), rebuilt(x)):
            raise RuntimeError(f'{path}: the reloaded network differs from the exported one.')
    print(f'exported {path}: {sum(p.numel() for p in net.parameters()):,} parameters, reload checked bit for bit')


def teacher_network(opt: dict) -> torch.nn.Module:
    net = build_network(dict(opt['network_t'])).eval()
    path = opt['path'].get('pretrain_network_t')
    if path and os.path.isfile(path):
        state = read_state_dict(path, opt['path'].get('param_key_t', 'params'), 'module.', 'path.pretrain_network_t')
        load_state_dict_checked(net, state, what='teacher')
    return net


def measure(name: str, net: torch.nn.Module, options: dict, args: argparse.Namespace) -> efficiency.EfficiencyReport:
    shape = [1, 3, args.input_size, args.input_size]
    counts = efficiency.count_ops(net, shape)
    x = torch.rand(shape)
    runtimes = efficiency.forward_runtimes(net, x, args.repeat, args.warmup)
    memory, method = efficiency.peak_memory(net, x)
    return efficiency.EfficiencyReport(name, options, shape, counts, memory, method,
                                       efficiency.device_name(torch.device('cpu')), args.warmup, runtimes)


def main(argv: List[str]) -> None:
    args = parse_args(argv)
    with open(args.opt) as f:
        opt = yaml.safe_load(f)
    student = load_student(opt, args)
    if args.out:
        export(student, dict(opt['network_g']), args.out)
    if args.skip_efficiency:
        return
    teacher = teacher_network(opt)
    networks = [('student ' + efficiency.arch_label(opt['network_g']), student, opt['network_g']),
                ('teacher ' + efficiency.arch_label(opt['network_t']), teacher, opt['network_t'])]
    if args.with_plain_teacher:
        conversion = convert_edsr(teacher)
        networks.append(
            ('plain equivalent of the teacher', to_plain_sr(conversion).eval(), plain_sr_options(conversion)))
    reports = [measure(name, net, options, args) for name, net, options in networks]
    print(efficiency.markdown_table(reports))
    s, t = reports[0], reports[1]
    print(f'student / teacher: peak memory {s.peak_memory_bytes / t.peak_memory_bytes:.3f}, '
          f'runtime {s.runtime_median_s / t.runtime_median_s:.3f}, FLOPs {s.counts.flops / t.counts.flops:.3f}')


if __name__ == '__main__':
    main(sys.argv[1:])
