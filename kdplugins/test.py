"""``python -m kdplugins.test -opt X.yml``: :func:`basicsr.test.test_pipeline` with kdplugins registered.

Results go to ``results/<name>`` under the current directory.
"""
import os

import kdplugins  # noqa: F401  (shims and registration)
from kdplugins.runtime.custom_imports import import_from_command_line
from kdplugins.runtime.option_checks import install_option_checks


def main() -> None:
    import basicsr.test
    import_from_command_line()
    install_option_checks()
    basicsr.test.test_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
