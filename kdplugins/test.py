"""``python -m kdplugins.test -opt X.yml``: :func:`basicsr.test.test_pipeline` with kdplugins registered.

Results go to ``results/<name>`` under the current directory.
"""
import os

import kdplugins  # noqa: F401  (compat fixes and registration)
from kdplugins.utils.options_check import install_option_checks


def main() -> None:
    import basicsr.test
    install_option_checks()
    basicsr.test.test_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
