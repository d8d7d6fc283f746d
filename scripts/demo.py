"""``make demo`` (or ``python scripts/demo.py`` in an installed environment): MemSR's winning initialization against
random initialization on photos bundled with scikit-image, with the efficiency of teacher and student and a picture of
the results (``experiments/demo/demo.png``); see :mod:`kdplugins.experiments.demo`. Runs in the repository root."""
import os

from kdplugins.experiments.demo import main

if __name__ == '__main__':
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    main(repository=root)
