"""``python -m kdplugins.test -opt X.yml [--import MODULE]``: :func:`kdplugins.pipeline.test_pipeline`.

Results go to ``results/<name>`` under the current directory.
"""
import os

from kdplugins.pipeline import test_pipeline


def main() -> None:
    test_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
