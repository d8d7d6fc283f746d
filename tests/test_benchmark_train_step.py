"""scripts/benchmark_train_step.py on tiny runs (no timing assertions: the printed numbers must be consistent)."""
import re
from conftest import kd_options, run_script, save_teacher, write_yaml


def test_benchmark_prints_times_and_consistent_ratios(tmp_path, tiny_lmdbs):
    kd = kd_options(tiny_lmdbs, save_teacher(tmp_path / 't.pth'), name='bench')
    augkd = dict(kd, model_type='AugKDModel')
    files = [str(write_yaml(tmp_path / 'kd.yml', kd)), str(write_yaml(tmp_path / 'augkd.yml', augkd))]
    out = run_script(
        'scripts/benchmark_train_step.py',
        '-opt',
        *files,
        '--repeat',
        '2',
        '--warmup',
        '1',
        '--rounds',
        '2',
        separate_process=True).stdout  # it keeps freed host memory: not in the test process
    assert 'median of 2 x 2 steps after 1 warm-up' in out
    times = {name: float(ms) for name, ms in re.findall(r'^(\w+) .*: ([0-9.]+) ms/step', out, re.M)}
    assert set(times) == {'KDModel', 'AugKDModel', 'SRModel'}
    ratios = re.findall(r'^(\w+) .*ms/step; ratio: ([0-9.]+)', out, re.M)

    def consistent(ratio: float, a: str, b: str) -> bool:
        """The printed ratio equals the ratio of the printed times, up to their rounding (0.005 ms, 0.0005)."""
        quotient = times[a] / times[b]
        return abs(ratio - quotient) <= quotient * (0.005 / times[a] + 0.005 / times[b]) + 0.0005 + 1e-9

    for name, ratio in ratios:
        assert consistent(float(ratio), name, 'SRModel'), (name, ratio, times)
    to_first = float(re.search(r'AugKDModel .*; ratio to KDModel \(kd.yml\): ([0-9.]+)', out).group(1))
    assert consistent(to_first, 'AugKDModel', 'KDModel'), (to_first, times)
