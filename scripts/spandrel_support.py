"""Which of the networks kdplugins trains load in spandrel (chaiNNer, ComfyUI): the table of docs/deploy.md.

    python scripts/spandrel_support.py [--options options]

Every distinct network_g / network_t of the option files under ``--options`` and the archs no option file names are
built with random weights and given to spandrel's ModelLoader as the file ``python -m kdplugins.export --format
spandrel`` writes (archs spandrel knows) or as the plain state_dict (the others); prints a Markdown table: spandrel's
arch, whether it reads the scale right and the largest output difference on a photo crop
(kdplugins/deploy/spandrel_support.py).
"""
import argparse
import sys

import kdplugins  # noqa: F401  (shims and registration before basicsr is used)

# isort: split
import spandrel
import torch

from kdplugins.deploy import spandrel_support


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--options', default='options', help='folder of option files (default: options)')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = spandrel_support.support_rows(args.options)
    print(f'spandrel {spandrel.__version__}, torch {torch.__version__}; random weights, a '
          f'{spandrel_support.CROP}x{spandrel_support.CROP} crop of astronaut.png')
    print(spandrel_support.markdown_table(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
