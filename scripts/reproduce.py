"""Small-scale reproduction on real data: does every method beat its baseline with a real teacher?

    python scripts/reproduce.py                 # everything: data, all runs (resumable), docs/results.md
    python scripts/reproduce.py --only scratch kd augkd --seeds 0
    python scripts/reproduce.py --report-only   # tables and plots from the runs that finished
    python scripts/reproduce.py --report-only --sections memsr   # rebuild only MemSR's section of docs/results.md
    python scripts/reproduce.py --data-root /data/kd   # images and checkpoints elsewhere (or KDPLUGINS_DATA_ROOT)

x4 super-resolution on T91 + BSD200, validated on Set5 and Set14 (images and the RFDN checkpoint from the data root:
``--data-root``, else the environment variable ``KDPLUGINS_DATA_ROOT``, else ``../shared/data`` beside this clone);
three claims (distillation from the pretrained RFDN, CSD against joint training, MemSR's plain student). Interrupted
runs resume, finished ones are skipped. The report (``docs/results.md``, plots in ``docs/figures/results/``) is built
from the runs' logs; docs/reproduction.md explains the choices. The recipe, the runs and the report are the package's:
:mod:`kdplugins.experiments.reproduction`, :mod:`kdplugins.experiments.reproduction_logs` and
:mod:`kdplugins.experiments.reproduction_report`.
"""
import argparse
import os
import sys

from kdplugins.experiments.reproduction import (CLAIMS, CSD, RECIPE, RUNS, build_data, claim_methods, configure,
                                                enter_repository, train_all)
from kdplugins.experiments.reproduction_report import calibration_table, write_report

DATA_ROOT_VARIABLE = 'KDPLUGINS_DATA_ROOT'
# this repository's own runs: the data beside the clone
DEFAULT_DATA_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '..', 'shared', 'data')


def arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--only', nargs='+', choices=list(RUNS), help='runs to train (default: every claim\'s)')
    parser.add_argument(
        '--recipe',
        choices=['cpu', 'gpu'],
        default='cpu',
        help='cpu: the recipe of docs/reproduction.md; gpu: the larger one-GPU recipe (docs/results_gpu.md)')
    parser.add_argument('--seeds', nargs='+', type=int, help="seeds (default: the recipe's)")
    parser.add_argument('--report-only', action='store_true', help='only rebuild docs/results.md from finished runs')
    parser.add_argument(
        '--sections',
        nargs='+',
        choices=[key for key, _, _, _ in CLAIMS],
        help='rebuild only these claims\' sections of the existing report (the others, the efficiency table and the '
        'trade-off plot stay as they are)')
    parser.add_argument(
        '--calibration-table',
        action='store_true',
        help='only print the table of the feature-loss weight runs that finished (docs/conventions.md)')
    parser.add_argument(
        '--rerun',
        action='store_true',
        help='train the selected runs (--only, --seeds) a second time, as <run>_rerun, to check that they reproduce')
    parser.add_argument('--vgg-weights', default=CSD['vgg_weights'], help="CSD's VGG-19 weights (default: random)")
    parser.add_argument(
        '--total-iter', type=int, help="iterations per run (default: the recipe's; runs are named by it)")
    parser.add_argument(
        '--data-root',
        default=os.environ.get(DATA_ROOT_VARIABLE) or os.path.relpath(DEFAULT_DATA_ROOT),
        help=f'folder of the training and validation images and the RFDN checkpoint (default: ${DATA_ROOT_VARIABLE}, '
        'else ../shared/data beside this clone)')
    return parser.parse_args(argv)


def main() -> None:
    args = arguments()
    configure(total_iter=args.total_iter, vgg_weights=args.vgg_weights, recipe=args.recipe, data_root=args.data_root)
    args.seeds = args.seeds or RECIPE['seeds']
    enter_repository()
    if args.calibration_table:
        print(calibration_table(args.seeds))
        return
    methods = args.only or claim_methods()
    data = build_data()
    if not args.report_only:
        train_all(methods, args.seeds, data, rerun=args.rerun)
    write_report(args.seeds, data, 'python scripts/reproduce.py ' + ' '.join(sys.argv[1:]), args.sections)


if __name__ == '__main__':
    main()
