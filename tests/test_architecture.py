"""The distillation base and its pieces: the refactor that introduced them changed no result."""
import json
import os
import pytest
import subprocess
import sys
from pathlib import Path

from conftest import REPO

# the last commit before the distillation base (kdplugins/models/distill_model.py)
BEFORE_REFACTOR = 'fd98bbda133ac21f377d8e739e8c6ba317b7198b'


def reference_digests(workdir: Path, lmdbs: dict, package_root: Path) -> dict:
    workdir.mkdir()
    lmdb_file = workdir / 'lmdbs.json'
    lmdb_file.write_text(json.dumps(lmdbs))
    env = {**os.environ, 'PYTHONPATH': str(package_root)}
    result = subprocess.run([sys.executable, str(REPO / 'tests' / 'run_refactor_reference.py'),
                             str(workdir), str(lmdb_file)],
                            cwd=workdir, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_kd_augkd_csd_and_memsr_train_bitwise_as_before_the_refactor(tmp_path, tiny_lmdbs):
    """Three steps of KD (+FitNet, CRD), AugKD (+FAKD), CSD and MemSR give bitwise the same student weights and
    logged losses with today's package as with the package of ``BEFORE_REFACTOR`` (taken from git history)."""
    old = tmp_path / 'before'
    old.mkdir()
    archive = subprocess.run(['git', '-C', str(REPO), 'archive', BEFORE_REFACTOR, 'kdplugins'], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f'needs the git history of kdplugins (commit {BEFORE_REFACTOR[:12]}): '
                    f'{archive.stderr.decode().strip()}')
    subprocess.run(['tar', '-x', '-C', str(old)], input=archive.stdout, check=True)
    before = reference_digests(tmp_path / 'run_before', tiny_lmdbs, old)
    now = reference_digests(tmp_path / 'run_now', tiny_lmdbs, REPO)
    assert set(before) == {'kd', 'augkd', 'csd', 'memsr'}
    assert now == before
