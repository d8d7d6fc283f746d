"""``python -m kdplugins.export -opt X.yml --checkpoint net_g.pth --out DIR [--format onnx torchscript ...]``

Writes the network of an option file (``network_g``: the student of a distillation run, or any registered arch; a
``.yml`` of bare network options as ``scripts/extract_csd_student.py`` writes works too) with the weights of a
checkpoint as ``DIR/<name>.onnx`` (onnxruntime-ready, any batch, height and width) and ``DIR/<name>.pt``
(TorchScript) by default; ``--format safetensors`` writes ``DIR/<name>.safetensors`` (the plain state_dict with the
network options in its metadata) and ``--format spandrel`` ``DIR/<name>.spandrel.safetensors`` (the keys spandrel,
chaiNNer and ComfyUI detect; only for the archs spandrel knows). ``DIR/<name>.yml`` gets the ``custom_imports``, the
``network_g``, the scale and the checks below; it is usable as ``-opt`` again. Each file is loaded back and run on
crops of real photos at two sizes (odd sides by default) against the PyTorch network: ONNX through onnxruntime,
TorchScript through ``torch.jit.load``, safetensors through ``build_network`` and spandrel files through spandrel's
``ModelLoader``. The largest absolute difference is printed; above ``--tolerance`` the command exits with status 1.
ONNX and safetensors need ``pip install 'kdplugins[export]'``. Details: docs/deploy.md.
"""
import argparse
import os
import sys
import yaml
from typing import List, Optional, Sequence, Tuple

import kdplugins  # noqa: F401  (shims and registration before basicsr is used)

# isort: split
import numpy as np
import torch

from kdplugins.deploy import formats, images, spandrel_layout
from kdplugins.deploy.network import DeployedNetwork, load_network
from kdplugins.runtime.custom_imports import add_import_argument
from kdplugins.utils.errors import exit_on_configuration_error

DEFAULT_CHECK_SIZES = ('48x64', '37x53')


def parse_size(text: str) -> Tuple[int, int]:
    """``'37x53'`` to (height 37, width 53)."""
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a size HEIGHTxWIDTH such as 37x53') from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f'{text!r}: sides must be positive')
    return height, width


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m kdplugins.export', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='BasicSR option file, or a .yml of network options (type: ...)')
    parser.add_argument('--checkpoint', required=True, help='weights (net_g_<iter>.pth, an extracted student .pth)')
    parser.add_argument('--out', required=True, help='folder for the exported files and <name>.yml')
    parser.add_argument(
        '--format',
        nargs='+',
        choices=sorted(formats.EXTENSIONS),
        default=['onnx', 'torchscript'],
        help='what to write (default: onnx torchscript); spandrel: a safetensors file in the layout spandrel '
        '(chaiNNer, ComfyUI) detects, for the archs it knows (docs/deploy.md)')
    parser.add_argument('--name', help="file name stem (default: the option file's name, or the .yml's stem)")
    parser.add_argument('--network', default='network_g', help='section of the option file (default network_g)')
    parser.add_argument('--param-key', default='params', help='params (default) or params_ema')
    parser.add_argument('--opset', type=int, default=formats.DEFAULT_OPSET, help='ONNX opset (default %(default)s)')
    parser.add_argument(
        '--check-images',
        nargs='+',
        metavar='IMAGE',
        help="photos for the checks (default: scikit-image's "
        'astronaut.png and chelsea.png); each is center-cropped to every --check-sizes')
    parser.add_argument(
        '--check-sizes',
        nargs='+',
        type=parse_size,
        default=[parse_size(s) for s in DEFAULT_CHECK_SIZES],
        metavar='HxW',
        help=f'LR crop sizes of the checks (default: {" ".join(DEFAULT_CHECK_SIZES)})')
    parser.add_argument(
        '--tolerance',
        type=float,
        default=1e-4,
        help='largest accepted absolute difference to PyTorch on [0, 1] '
        'images (default %(default)s)')
    add_import_argument(parser)
    return parser.parse_args(argv)


def check_inputs(paths: Sequence[str], sizes: Sequence[Tuple[int, int]],
                 channels: int) -> List[Tuple[str, torch.Tensor]]:
    """(label, 1xCxHxW tensor) for every image at every size."""
    inputs = []
    for path in paths:
        image = images.read_image(path)
        for height, width in sizes:
            crop = images.Image(images.center_crop(image.pixels, height, width, path), image.bit_depth)
            inputs.append((f'{os.path.basename(path)} {height}x{width}', images.to_network_input(crop, channels)))
    return inputs


def largest_difference(run: formats.Runner, references: Sequence[Tuple[str, torch.Tensor, np.ndarray]]) -> float:
    """Max abs difference between ``run`` and the PyTorch outputs over all check inputs (inf when the file fails
    to run or gives another shape)."""
    worst = 0.0
    for label, x, expected in references:
        try:
            got = run(x.numpy())
        except Exception as error:  # onnxruntime and TorchScript raise their own types for a size they cannot run
            print(f'  {label}: the exported file failed to run: {type(error).__name__}: {error}')
            return float('inf')
        if got.shape != expected.shape:
            print(f'  {label}: output shape {got.shape}, PyTorch {expected.shape}')
            return float('inf')
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def export_and_check(deployed: DeployedNetwork, args: argparse.Namespace, name: str) -> Tuple[dict, List[str]]:
    """Write every asked format, check each against PyTorch; (report for the .yml, failure messages)."""
    paths = args.check_images or images.scikit_image_photos()
    inputs = check_inputs(paths, args.check_sizes, deployed.in_channels)
    with torch.no_grad():
        references = [(label, x, deployed.net(x).numpy()) for label, x in inputs]
    scale = references[0][2].shape[-2] // references[0][1].shape[-2]
    colour = 'RGB' if deployed.in_channels == 3 else f'{deployed.in_channels} channels'
    metadata = {
        'network_g': deployed.options,
        'custom_imports': deployed.imports,
        'scale': scale,
        'input': f'NCHW float32 in [0, 1], {colour}'
    }
    report, failures = {}, []
    for kind in args.format:
        path = formats.export(kind, deployed.net, inputs[0][1], args.out, name, args.opset, metadata)
        difference = largest_difference(formats.runner(kind, path), references)
        verdict = 'ok' if difference <= args.tolerance else 'FAILED'
        print(f'{kind:<11} {path}: max abs difference to PyTorch {difference:.3g} over {len(references)} checks '
              f'({formats.ENGINES[kind]}; tolerance {args.tolerance:g}) {verdict}')
        report[kind] = {'file': os.path.basename(path), 'max_abs_difference': difference, 'checks': len(references)}
        if verdict != 'ok':
            failures.append(f'{path} differs from PyTorch by {difference:.3g} > {args.tolerance:g}')
    report['checked_on'] = [label for label, _ in inputs]
    report['scale'] = scale
    return report, failures


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    deployed = load_network(args.opt, args.checkpoint, args.network, args.param_key, args.imports)
    formats.import_for(args.format)
    if 'spandrel' in args.format:
        spandrel_layout.check_supported(deployed.options)
    os.makedirs(args.out, exist_ok=True)
    name = args.name or deployed.name
    print(f'{deployed.options["type"]} from {args.opt} with {args.checkpoint} '
          f'({sum(p.numel() for p in deployed.net.parameters()):,} parameters)')
    report, failures = export_and_check(deployed, args, name)
    options_path = os.path.join(args.out, name + '.yml')
    with open(options_path, 'w') as f:
        exported = {'name': name, 'custom_imports': deployed.imports, 'network_g': deployed.options, 'export': report}
        yaml.safe_dump(exported, f, sort_keys=False)
    print(f'wrote {options_path}')
    if failures:
        print(
            'export check failed: ' + '; '.join(failures) + '. The exported files do not reproduce the network; '
            'see docs/deploy.md (Troubleshooting) and report the arch.',
            file=sys.stderr)
        return 1
    return 0


def command_line() -> None:
    """``kd-export``: :func:`main` with a configuration error printed without a traceback (exit code 2)."""
    with exit_on_configuration_error('kd-export'):
        sys.exit(main())


if __name__ == '__main__':
    command_line()
