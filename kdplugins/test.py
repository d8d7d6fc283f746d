"""``python -m kdplugins.test -opt X.yml [--import MODULE]``: :func:`kdplugins.pipeline.test_pipeline`.

Results go to ``results/<name>`` under the current directory.
"""
import os

from kdplugins.pipeline import test_pipeline
from kdplugins.utils.errors import exit_on_configuration_error


def main() -> None:
    with exit_on_configuration_error('kd-test'):  # a configuration error: its message alone, exit code 2
        test_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
