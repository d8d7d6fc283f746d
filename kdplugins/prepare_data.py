"""``python -m kdplugins.prepare_data FAMILY --root DOWNLOADED [--out datasets]`` (``kd-prepare-data``): a published
SR data set, downloaded and unpacked by hand, checked (folder, image count) and written in BasicSR's layout under
``datasets/``, the paths the option files read: sub-image LMDBs with ``meta_info.txt`` and MATLAB-bicubic LR for the
training sets, HR and LR folders for the test sets (:mod:`kdplugins.data.prepare`, docs/datasets.md).

``python -m kdplugins.prepare_data --list`` prints every family with its download location(s) and outputs.
"""
import argparse
import sys
from typing import Optional, Sequence

from kdplugins.data.catalog import BY_NAME, FAMILIES, output_paths
from kdplugins.data.paired_lmdb import DataPreparationError
from kdplugins.data.prepare import download_hint, prepare_family
from kdplugins.utils.errors import exit_on_configuration_error


def family_table() -> str:
    """Every family: what it is, where to download it, what it writes under ``datasets/``."""
    lines = []
    for family in FAMILIES:
        lines.append(f'{family.name}: {family.description}')
        for source in family.sources:
            lines.append(f'  {source.name}: {source.count} images; ' + download_hint(source))
        lines.append('  writes: ' + ', '.join(f'datasets/{path}' for path in output_paths(family)))
    return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='kd-prepare-data', description=__doc__.split('\n\n')[0])
    parser.add_argument('family', nargs='?', metavar='FAMILY', help='one of: ' + ', '.join(BY_NAME))
    parser.add_argument(
        '--root',
        nargs='+',
        default=[],
        help='folder(s) where the download was unpacked (DF2K: the DIV2K and the Flickr2K one)')
    parser.add_argument('--out', default='datasets', help='output folder (default datasets, as the option files read)')
    parser.add_argument('--scales', type=int, nargs='+', default=None, help='LR scales (default: 2 3 4; T91_BSD200: 4)')
    parser.add_argument(
        '--max-images',
        type=int,
        default=None,
        help='only the first N images of each folder (a smoke run; the count check then asks for N)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    parser.add_argument('--list', action='store_true', help='print the families, their downloads and outputs')
    args = parser.parse_args(argv)
    if args.list:
        return args
    if args.family not in BY_NAME:
        raise DataPreparationError(f'unknown data set family {args.family!r}: give one of {", ".join(BY_NAME)} '
                                   '(python -m kdplugins.prepare_data --list shows where to download each).')
    if not args.root:
        raise DataPreparationError(f'give --root, the folder where the {args.family} download was unpacked. ' +
                                   download_hint(BY_NAME[args.family].sources[0]))
    if args.max_images is not None and args.max_images < 1:
        raise DataPreparationError(f'--max-images must be at least 1, not {args.max_images}.')
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.list:
        print(family_table())
        return
    prepare_family(BY_NAME[args.family], args.root, args.out, args.scales, args.max_images, not args.no_progress)


def command_line() -> None:
    """Console entry point ``kd-prepare-data``: configuration errors print their message alone and exit with 2."""
    with exit_on_configuration_error('kd-prepare-data'):
        main(sys.argv[1:])


if __name__ == '__main__':
    command_line()
