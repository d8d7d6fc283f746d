"""``python -m kdplugins.infer -opt X.yml --checkpoint net_g.pth -i IN -o OUT [--tile T --tile-pad P]``

Super-resolves every PNG/JPEG image of the folder IN (grey or colour, 8 or 16 bits, an alpha channel resized
bicubically) with the network of an option file (``network_g``, or a .yml of network options such as
``scripts/extract_csd_student.py`` writes) and writes ``OUT/<stem>.png``: grey stays grey, 16-bit input gives a 16-bit
PNG. A progress bar runs over the images; at the end the peak memory is printed (CUDA:
``torch.cuda.max_memory_allocated``; CPU: the process's peak resident set size, ``resource.getrusage``).

Tiling (``--tile T``, LR pixels): each tile is run with ``--tile-pad`` LR pixels of context (default: the receptive
radius of the network, found by one probe forward), which gives exactly the whole-image output for networks made of
local operations (EDSR, PlainSR, CARN, CARN-M, MSRResNet...). Networks with global or grid-aligned operations cannot
be tiled exactly whatever the padding: the channel attention of RCAN and IMDN (statistics over the whole image) and
RFDN's ESA (strided conv, strided max pool, resize to the input size) see other values in a tile; the command warns.

Files that cannot be read or processed are reported by name and skipped; the exit status is then 1, after every other
image was processed. An output that already exists is not overwritten (reported, exit status 0, so that a run can
be resumed) unless ``--overwrite`` is given. Details: docs/deploy.md.
"""
import argparse
import os
import sys
from typing import List, Optional, Sequence

import kdplugins  # noqa: F401  (shims and registration before basicsr is used)

# isort: split
import torch
from tqdm import tqdm

from kdplugins.deploy import images, locality, memory
from kdplugins.deploy.network import DeployedNetwork, load_network
from kdplugins.deploy.tiling import tiled_forward
from kdplugins.runtime.custom_imports import add_import_argument
from kdplugins.utils.efficiency import resolve_device
from kdplugins.utils.errors import exit_on_configuration_error

PROBE = f'{locality.PROBE_HEIGHT}x{locality.PROBE_WIDTH}'


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m kdplugins.infer', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='BasicSR option file, or a .yml of network options (type: ...)')
    parser.add_argument('--checkpoint', required=True, help='weights (net_g_<iter>.pth, an extracted student .pth)')
    parser.add_argument('-i', '--input', required=True, help='folder of PNG/JPEG images')
    parser.add_argument('-o', '--output', required=True, help='folder for the results (<stem>.png)')
    parser.add_argument(
        '--tile',
        type=int,
        help='tile side in LR pixels (default: whole images); equal to whole-image inference for '
        'networks without global operations (not RCAN, IMDN, RFDN: see above)')
    parser.add_argument(
        '--tile-pad',
        type=int,
        help='context around each tile in LR pixels (default: the receptive radius, which '
        'makes tiling exact for networks without global operations)')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto', help='auto: CUDA if available')
    parser.add_argument('--overwrite', action='store_true', help='replace outputs that already exist')
    parser.add_argument('--network', default='network_g', help='section of the option file (default network_g)')
    parser.add_argument('--param-key', default='params', help='params (default) or params_ema')
    add_import_argument(parser)
    args = parser.parse_args(argv)
    if args.tile is not None and args.tile < 1:
        parser.error('--tile must be a positive number of LR pixels.')
    if args.tile_pad is not None and (args.tile is None or args.tile_pad < 0):
        parser.error('--tile-pad needs --tile and must be 0 or more.')
    return args


def tile_padding(deployed: DeployedNetwork, tile: int, pad: Optional[int], device: torch.device) -> int:
    """The padding to use, after saying whether tiling with it reproduces whole-image inference."""
    try:
        found = locality.analyse(deployed.net, deployed.in_channels, device)
    except Exception as error:  # the probe runs the network's own code: any failure means "not analysed"
        chosen = 16 if pad is None else pad
        print(f'warning: the locality of {deployed.options["type"]} could not be analysed (a {PROBE} probe input '
              f'failed: {type(error).__name__}: {error}); tiling with pad {chosen} is not known to equal whole-image '
              'inference.')
        return chosen
    chosen = found.radius if pad is None else pad
    if not found.tiles_exactly:
        print(f'warning: {deployed.options["type"]} cannot be tiled exactly: it has non-local operations (' +
              '; '.join(found.nonlocal_operations) + '). Each tile sees other statistics than the whole image, so '
              'the result differs from whole-image inference whatever --tile-pad; run without --tile if memory '
              f'allows, or with a tile as large as it does. Tiling with tile {tile}, pad {chosen}.')
    elif chosen < found.radius:
        print(f'warning: --tile-pad {chosen} is below the receptive radius of {deployed.options["type"]} '
              f'({found.radius} LR pixels): outputs near tile seams differ from whole-image inference. '
              f'Use --tile-pad {found.radius} (the default) for an exact result.')
    else:
        print(f'tiling: tile {tile}, pad {chosen} LR pixels; receptive radius {found.radius}, no global operation: '
              'equal to whole-image inference.')
    return chosen


def super_resolve(deployed: DeployedNetwork, image: images.Image, device: torch.device, tile: Optional[int],
                  pad: int) -> images.Image:
    """The SR image of ``image`` (whole or tiled)."""
    x = images.to_network_input(image, deployed.in_channels).to(device)
    with torch.no_grad():
        output = deployed.net(x) if tile is None else tiled_forward(deployed.net, x, tile, pad, torch.device('cpu'))
    return images.from_network_output(output, image)


def run(args: argparse.Namespace) -> int:
    paths, others = images.list_images(args.input)
    if not paths:
        raise SystemExit(f'-i {args.input}: no .png, .jpg or .jpeg file in this folder.')
    if os.path.realpath(args.input) == os.path.realpath(args.output):
        raise SystemExit(f'-o {args.output} is the input folder: results would replace the inputs of the same name. '
                         'Give another output folder.')
    device = resolve_device(args.device)
    deployed = load_network(args.opt, args.checkpoint, args.network, args.param_key, args.imports)
    deployed.net.to(device)
    os.makedirs(args.output, exist_ok=True)
    memory.reset_peak(device)
    pad = tile_padding(deployed, args.tile, args.tile_pad, device) if args.tile else 0
    written: List[str] = []
    existing: List[str] = []
    failed: List[str] = []
    produced = set()  # outputs of this run, to catch two inputs of the same stem (a.png, a.jpg)
    for path in tqdm(paths, desc=f'{deployed.name} on {device.type}', unit='image'):
        target = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0] + '.png')
        if target in produced:
            failed.append(f'{path}: its output {target} was already written from another input with the same stem')
            continue
        if os.path.exists(target) and not args.overwrite:
            existing.append(target)
            continue
        try:
            images.write_png(target, super_resolve(deployed, images.read_image(path), device, args.tile, pad))
        except (images.ImageError, RuntimeError, ValueError, OSError) as error:
            failed.append(str(error) if path in str(error) else f'{path}: {type(error).__name__}: {error}')
            tqdm.write(f'skipped {failed[-1]}')
            continue
        written.append(target)
        produced.add(target)
    peak, method = memory.peak_memory(device)
    print(f'wrote {len(written)} images to {args.output}')
    if others:
        print(f'ignored {len(others)} files without a .png/.jpg/.jpeg extension: ' +
              ', '.join(os.path.basename(p) for p in others))
    if existing:
        print(f'kept {len(existing)} existing outputs (pass --overwrite to replace them): ' +
              ', '.join(os.path.basename(p) for p in existing))
    print(f'peak memory: {peak / memory.MIB:.1f} MiB ({method})')
    if failed:
        print(f'{len(failed)} file(s) skipped:\n  ' + '\n  '.join(failed), file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


def command_line() -> None:
    """``kd-infer``: :func:`main` with a configuration error printed without a traceback (exit code 2)."""
    with exit_on_configuration_error('kd-infer'):
        sys.exit(main())


if __name__ == '__main__':
    command_line()
