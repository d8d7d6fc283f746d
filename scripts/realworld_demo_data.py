"""``python scripts/realworld_demo_data.py [--out datasets/realworld_demo] [--seed 0]``: the training photos and the
fixed degraded validation pairs of options/train/RealWorldKD/*_cpu.yml (:mod:`kdplugins.experiments.realworld_data`).
Runs in the repository root."""
import argparse
import os

from kdplugins.experiments.realworld_data import write_realworld_demo

if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out', default=os.path.join('datasets', 'realworld_demo'))
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    write_realworld_demo(args.out, seed=args.seed)
