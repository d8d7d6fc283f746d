"""The demo's pieces (kdplugins/experiments/demo.py) on a few iterations, in a temporary folder: LMDBs from
scikit-image's photos, teacher, winning initialization, both students, evaluation, efficiency and the picture."""
import glob
import numpy as np
import pytest
import re
from conftest import REPO

from kdplugins.experiments import demo


def last_validation_psnr(experiment) -> float:
    log = ''.join(open(p).read() for p in sorted(glob.glob(str(experiment / 'train_*.log'))))
    return float(re.findall(r'# psnr: ([0-9.]+)', log)[-1])


@pytest.fixture(scope='module')
def quick_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        results, reports = demo.run(
            str(REPO / 'options' / 'train' / 'MemSR'),
            str(REPO / 'scripts' / 'memsr_init.py'),
            str(root / 'out'),
            iterations=(6, 3))
    return root, results, reports


def test_demo_psnrs_are_those_basicsr_validated(quick_demo):
    root, results, _ = quick_demo
    titles = [r.title for r in results]
    assert titles == [
        'bicubic', 'plain student, random init + FD (3 it)', 'plain student, winning init (0 it)',
        'plain student, winning init + FD (3 it)', 'teacher PixelShuffleEDSR (6 it)'
    ]
    by_title = dict(zip(titles, results))
    # the demo's own evaluation of each trained network = basicsr's last validation of its run (same LMDB, metric)
    for title, experiment in (('plain student, random init + FD (3 it)', 'demo_MemSR_PlainS_f32_x2_random'),
                              ('plain student, winning init + FD (3 it)', 'demo_MemSR_PlainS_f32_x2'),
                              ('teacher PixelShuffleEDSR (6 it)', 'demo_Teacher_PixelShuffleEDSR_f32b4_x2')):
        assert round(by_title[title].psnr, 4) == last_validation_psnr(root / 'experiments' / experiment), title
    hr, _ = demo.validation_pair(str(root / 'datasets' / 'demo'))
    assert all(r.image.shape == hr.shape and r.image.dtype == np.uint8 for r in results)
    assert (root / 'out' / 'demo.png').stat().st_size > 10000


def test_the_plain_student_needs_less_memory_than_its_residual_teacher(quick_demo):
    _, _, reports = quick_demo
    teacher, student = reports['teacher'], reports['student']
    assert student.counts.convs == teacher.counts.convs == 11  # 2 * 4 blocks + head + body end + tail (and 1 plain)
    assert student.peak_memory_bytes < 0.8 * teacher.peak_memory_bytes


def test_strongest_crop_is_the_window_with_the_largest_squared_error():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
    top, left = demo.strongest_crop(a, b, size=16, stride=4)
    error = ((a.astype(float) - b.astype(float))**2).sum(axis=2)
    sums = {(t, c): error[t:t + 16, c:c + 16].sum() for t in range(0, 25, 4) for c in range(0, 41, 4)}
    assert (top, left) == max(sums, key=sums.get)
