"""scripts/benchmark_train_step.py on a tiny KD run (no timing assertions: the numbers must be consistent)."""
import re

from conftest import kd_options, run_script, save_teacher, write_yaml


def test_benchmark_prints_both_times_and_their_ratio(tmp_path, tiny_lmdbs):
    opt = kd_options(tiny_lmdbs, save_teacher(tmp_path / 't.pth'), name='bench')
    out = run_script('scripts/benchmark_train_step.py', '-opt', str(write_yaml(tmp_path / 'o.yml', opt)), '--repeat',
                     '3', '--warmup', '1').stdout
    kd = float(re.search(r'KDModel: ([0-9.]+) ms/step', out).group(1))
    scratch = float(re.search(r'SRModel \(student alone\): ([0-9.]+) ms/step', out).group(1))
    ratio = float(re.search(r'ratio: ([0-9.]+)', out).group(1))
    assert 'median of 3 steps after 1 warm-up' in out
    assert abs(ratio - kd / scratch) <= 0.01 * ratio
