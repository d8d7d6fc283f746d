"""(Re)write options/train/paper/*.yml and their benchmark test files options/test/paper/*.yml with
kdplugins/experiments/paper_recipes.py (data: paper_tables.py and method_options.py).

    python scripts/make_paper_options.py [--out options/train/paper] [--test-out options/test/paper] [--table]

``--table`` prints the Markdown table of docs/paper_recipes.md instead of writing the files.
"""
import argparse
import os
from typing import List, Optional

from kdplugins.experiments import paper_recipes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=os.path.join(REPO, 'options', 'train', 'paper'), help='output folder')
    parser.add_argument(
        '--test-out', default=os.path.join(REPO, 'options', 'test', 'paper'), help='output folder of the test files')
    parser.add_argument('--table', action='store_true', help='print the docs/paper_recipes.md table and exit')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.table:
        print(paper_recipes.markdown_table(), end='')
        return
    paths = paper_recipes.write_all(args.out)
    counts = ', '.join(f'{table}: {count}' for table, count in paper_recipes.rows_by_table().items())
    print(f'wrote {len(paths)} option files to {args.out} ({counts})')
    tests = paper_recipes.write_benchmarks(args.test_out)
    print(f'wrote {len(tests)} benchmark test files to {args.test_out} (every row but CSD / J-T)')


if __name__ == '__main__':
    main()
