"""Shared pytest fixtures."""
import os
from pathlib import Path

import pytest


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository, or ``$KDPLUGINS_SHARED_DATA`` when set."""
    override = os.environ.get('KDPLUGINS_SHARED_DATA')
    return Path(override) if override else Path(__file__).resolve().parents[2] / 'shared' / 'data'


@pytest.fixture(scope='session')
def shared_data() -> Path:
    """The real benchmark images and pretrained checkpoints; skips the test when they are absent."""
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f'shared data not found at {root}: these tests need the real images and checkpoints '
                    '(set KDPLUGINS_SHARED_DATA to the folder holding checkpoints/ and val/).')
    return root
