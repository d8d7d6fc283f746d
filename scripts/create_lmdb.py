"""Build paired HR/LR LMDBs (with meta_info.txt) for BasicSR from image folders.

Examples:
    # LR made here by MATLAB-style bicubic (HR cropped to a multiple of 4), images cut into 192x192 sub-images
    python scripts/create_lmdb.py --hr ../shared/data/train/T91/HR --scale 4 --crop-size 192 --step 96 \\
        --out-hr datasets/T91_HR_sub.lmdb --out-lr datasets/T91_LR_bicubic_X4_sub.lmdb
    # LR read from a folder (files named <stem>x4.png)
    python scripts/create_lmdb.py --hr ../shared/data/val/Set5/HR --lr ../shared/data/val/Set5/LR_bicubic/X4 \\
        --lr-name '{}x4' --scale 4 --out-hr datasets/Set5_HR.lmdb --out-lr datasets/Set5_LR_X4.lmdb
"""
import argparse

import kdplugins  # noqa: F401
from kdplugins.data.paired_lmdb import list_images, paired_samples, write_paired_lmdb


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hr', nargs='+', required=True, help='HR image folder(s)')
    parser.add_argument(
        '--lr',
        nargs='+',
        default=None,
        help='LR image folder(s), one per HR folder; default: '
        'make LR by MATLAB-style bicubic')
    parser.add_argument('--lr-name', default='{}', help="LR file stem from the HR stem, e.g. '{}x4' (default '{}')")
    parser.add_argument('--scale', type=int, required=True)
    parser.add_argument('--crop-size', type=int, default=0, help='HR sub-image size (0: whole images)')
    parser.add_argument('--step', type=int, default=0, help='HR sub-image stride (default: crop size / 2)')
    parser.add_argument('--thresh-size', type=int, default=0, help='remainder below which no extra border crop')
    parser.add_argument('--compress-level', type=int, default=1, help='PNG compression level in the LMDB')
    parser.add_argument('--out-hr', required=True, help='output HR LMDB folder (ends with .lmdb)')
    parser.add_argument('--out-lr', required=True, help='output LR LMDB folder (ends with .lmdb)')
    args = parser.parse_args(argv)
    if args.lr is not None and len(args.lr) != len(args.hr):
        parser.error('give one --lr folder per --hr folder')
    if args.crop_size and not args.step:
        args.step = args.crop_size // 2 - (args.crop_size // 2) % args.scale
    return args


def main(argv=None) -> None:
    args = parse_args(argv)

    def samples():
        for i, hr_folder in enumerate(args.hr):
            lr_folder = args.lr[i] if args.lr else None
            yield from paired_samples(
                list_images(hr_folder), args.scale, lr_folder, args.lr_name, args.crop_size, args.step,
                args.thresh_size)

    count = write_paired_lmdb(samples(), args.out_hr, args.out_lr, args.compress_level)
    print(f'Wrote {count} pairs to {args.out_hr} and {args.out_lr}.')


if __name__ == '__main__':
    main()
