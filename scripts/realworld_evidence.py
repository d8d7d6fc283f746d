"""``python scripts/realworld_evidence.py [--seeds 0 1 2 3 4] [--iterations N]``: the CPU-sized real-world teacher,
then per seed the compact student distilled from it and alone on the same degradations, and the paired differences
of their PSNR / SSIM on the fixed degraded validation pairs (:mod:`kdplugins.experiments.realworld_evidence`).
Resumable; runs in the repository root."""
import argparse
import os

from kdplugins.experiments.realworld_evidence import run

if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument('--iterations', type=int, help='shorten every run (a smoke run; the option files: 2000)')
    args = parser.parse_args()
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    print(run(args.seeds, args.iterations))
