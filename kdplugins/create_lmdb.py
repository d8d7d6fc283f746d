"""``python -m kdplugins.create_lmdb`` (``kd-create-lmdb``): paired HR/LR LMDBs with ``meta_info.txt`` for BasicSR's
``PairedImageDataset`` from image folders, with a progress bar over the images.

The LR is made here with MATLAB-style bicubic (``basicsr.utils.matlab_functions.imresize`` of the HR cropped to a
multiple of the scale) or read from LR folders; images can be cut into overlapping sub-images first
(:mod:`kdplugins.data.paired_lmdb`). For the published data sets (DIV2K, Flickr2K, Set5, ...) in the layout the option
files read, use ``python -m kdplugins.prepare_data`` (docs/datasets.md).

Examples:
    # LR made here by MATLAB-style bicubic (HR cropped to a multiple of 4), images cut into 256x256 sub-images
    python -m kdplugins.create_lmdb --hr datasets/T91/HR datasets/BSD200/HR --scale 4 --crop-size 256 --step 128 \\
        --out-hr datasets/T91_BSD200_HR_sub256.lmdb --out-lr datasets/T91_BSD200_LR_bicubic_X4_sub256.lmdb
    # LR read from a folder (files named <stem>x4.png)
    python -m kdplugins.create_lmdb --hr datasets/Set5/HR --lr datasets/Set5/LR_bicubic/X4 --lr-name '{}x4' \\
        --scale 4 --out-hr datasets/Set5_HR.lmdb --out-lr datasets/Set5_LR_X4.lmdb
"""
import argparse
import os
import sys
from tqdm import tqdm
from typing import List, Optional, Sequence

from kdplugins.data.paired_lmdb import (DataPreparationError, check_new_output, list_images, lr_partner, paired_samples,
                                        write_paired_lmdb)
from kdplugins.utils.errors import exit_on_configuration_error


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='kd-create-lmdb', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hr', nargs='+', required=True, help='HR image folder(s)')
    parser.add_argument(
        '--lr',
        nargs='+',
        default=None,
        help='LR image folder(s), one per HR folder; default: make LR by MATLAB-style bicubic')
    parser.add_argument('--lr-name', default='{}', help="LR file stem from the HR stem, e.g. '{}x4' (default '{}')")
    parser.add_argument('--scale', type=int, required=True)
    parser.add_argument('--crop-size', type=int, default=0, help='HR sub-image size (0: whole images)')
    parser.add_argument('--step', type=int, default=0, help='HR sub-image stride (default: crop size / 2)')
    parser.add_argument('--thresh-size', type=int, default=0, help='remainder below which no extra border crop')
    parser.add_argument('--compress-level', type=int, default=1, help='PNG compression level in the LMDB')
    parser.add_argument('--out-hr', required=True, help='output HR LMDB folder (ends with .lmdb)')
    parser.add_argument('--out-lr', required=True, help='output LR LMDB folder (ends with .lmdb)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    if args.lr is not None and len(args.lr) != len(args.hr):
        raise DataPreparationError(f'{len(args.hr)} --hr folder(s) but {len(args.lr)} --lr folder(s): give one --lr '
                                   'folder per --hr folder, in the same order (or no --lr to make the LR by bicubic).')
    if args.crop_size and not args.step:
        args.step = args.crop_size // 2 - (args.crop_size // 2) % args.scale
    return args


def input_pairs(hr_folders: Sequence[str], lr_folders: Optional[Sequence[str]], lr_name: str) -> List[tuple]:
    """``[(hr image, its LR folder or None)]`` of every HR folder; every LR partner is checked before anything is
    written, so that a missing file stops the command at once."""
    pairs = []
    for i, hr_folder in enumerate(hr_folders):
        lr_folder = lr_folders[i] if lr_folders else None
        for path in list_images(hr_folder):
            if lr_folder:
                lr_partner(lr_folder, lr_name, *os.path.splitext(os.path.basename(path)), path)
            pairs.append((path, lr_folder))
    return pairs


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Write the two LMDBs; returns the number of pairs."""
    args = parse_args(argv)
    pairs = input_pairs(args.hr, args.lr, args.lr_name)
    for path in (args.out_hr, args.out_lr):
        check_new_output(path)

    def samples():
        for hr_path, lr_folder in tqdm(pairs, desc='images', unit='img', disable=args.no_progress):
            yield from paired_samples([hr_path], args.scale, lr_folder, args.lr_name, args.crop_size, args.step,
                                      args.thresh_size)

    count = write_paired_lmdb(samples(), args.out_hr, args.out_lr, args.compress_level)
    print(f'Wrote {count} pairs to {args.out_hr} and {args.out_lr}.')
    return count


def command_line() -> None:
    """Console entry point ``kd-create-lmdb``: configuration errors print their message alone and exit with 2."""
    with exit_on_configuration_error('kd-create-lmdb'):
        main(sys.argv[1:])


if __name__ == '__main__':
    command_line()
