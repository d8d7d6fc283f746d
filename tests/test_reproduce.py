"""kdplugins.experiments.reproduction (scripts/reproduce.py): every run shares the recipe; only the documented settings
differ."""
import importlib.util
import os
import pytest
import re
import torch
import yaml
from conftest import REPO

from kdplugins.experiments import method_options, paper_recipes, reproduction
from kdplugins.experiments import reproduction_logs as logs
from kdplugins.experiments import reproduction_report as report
from kdplugins.runtime.option_schema import option_problems

DATA = {key: f'datasets/{key}.lmdb' for key in ('train_hr', 'train_lr', 'Set5_hr', 'Set5_lr', 'Set14_hr', 'Set14_lr')}


@pytest.fixture(autouse=True)
def data_root(monkeypatch):
    """The data root scripts/reproduce.py passes by default for this repository's runs."""
    monkeypatch.setattr(reproduction, 'DATA_ROOT', os.path.join('..', 'shared', 'data'))


def options(method: str, seed: int) -> dict:
    return reproduction.RUNS[method](reproduction.base_options(reproduction.run_name(method, seed), seed, DATA), seed)


def test_every_run_shares_the_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the CSD initialization files are written here
    recipe = reproduction.RECIPE
    for method in reproduction.RUNS:
        for seed in recipe['seeds']:
            opt = options(method, seed)
            train_set = opt['datasets']['train']
            assert opt['manual_seed'] == seed
            teacher_factor = reproduction.MEMSR_TEACHER_ITER_FACTOR if method == 'memsr_teacher' else 1
            assert opt['train']['total_iter'] == recipe['total_iter'] * teacher_factor
            assert train_set['batch_size_per_gpu'] == recipe['batch_size']
            assert train_set['dataroot_gt'] == DATA['train_hr']
            assert [opt['datasets'][k]['name'] for k in ('val_1', 'val_2')] == ['Set5', 'Set14']
            assert opt['val']['metrics']['psnr'] == {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': True}
            csd = method in ('jt', 'csd')
            assert train_set['gt_size'] == (reproduction.CSD['gt_size'] if csd else recipe['gt_size'])
            if method in ('scratch', 'kd', 'augkd', 'crd', 'fitnet', 'fakd', 'mt_mean', 'mt_error'):
                assert opt['network_g'] == recipe['student']
                assert opt['train']['optim_g']['lr'] == recipe['lr']
            if method in reproduction.FEATURE_KD_OPTIONS:  # the settings documented in the method's option file
                with open(reproduction.FEATURE_KD_OPTIONS[method][1]) as f:
                    reference = yaml.safe_load(f)
                assert opt['train']['feature_losses'] == reference['train']['feature_losses']
                assert opt['train']['kd_opt'] == reference['train']['kd_opt']
                assert train_set['type'] == reference['datasets']['train']['type']
            if method.startswith('mt_'):  # KD's options and teacher, two more teachers, only the combination differs
                kd = options('kd', seed)
                assert {k: v for k, v in opt['train'].items() if k != 'multi_teacher'} == kd['train']
                assert opt['train']['multi_teacher'] == {'combine': method[3:]}
                assert opt['network_t'] == kd['network_t'] and [k for k in opt if k.startswith('network_t')
                                                                ] == ['network_t', 'network_t_imdn', 'network_t_carnm']
                assert option_problems({**opt, 'is_train': True}) == []


def test_the_data_root_comes_from_the_command_line_never_from_the_package(tmp_path, monkeypatch):
    """scripts/reproduce.py passes --data-root, else $KDPLUGINS_DATA_ROOT, else ../shared/data beside the clone; a
    relative root is read from the current directory and written relative to the repository root (where the runs
    start), so the default gives the run options of before; without a root the package stops with the fix."""
    spec = importlib.util.spec_from_file_location('reproduce', REPO / 'scripts' / 'reproduce.py')
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('KDPLUGINS_DATA_ROOT', raising=False)
    reproduction.configure(data_root=script.arguments([]).data_root)
    assert reproduction.DATA_ROOT == os.path.relpath(REPO.parent / 'shared' / 'data', reproduction.ROOT)
    assert options('kd', 0)['path']['pretrain_network_t'] == os.path.join(reproduction.DATA_ROOT, 'checkpoints',
                                                                          'RFDN_AIM_x4.pth')
    monkeypatch.setenv('KDPLUGINS_DATA_ROOT', '/data/kd')
    reproduction.configure(data_root=script.arguments([]).data_root)
    assert reproduction.DATA_ROOT == '/data/kd'
    reproduction.configure(data_root=script.arguments(['--data-root', 'images']).data_root)
    assert reproduction.DATA_ROOT == os.path.relpath(tmp_path / 'images', reproduction.ROOT)
    monkeypatch.setattr(reproduction, 'DATA_ROOT', None)
    with pytest.raises(RuntimeError, match=r'data root is not set.*--data-root PATH, or KDPLUGINS_DATA_ROOT=PATH'):
        options('kd', 0)


def test_the_paper_recipes_and_the_reproduction_build_every_method_with_the_one_builder(tmp_path, monkeypatch):
    """One table of methods (kdplugins.experiments.method_options.METHODS) and one builder: every paper row and every
    reproduction run gets its model and losses from ``method_options``, each with its own networks, taps and
    settings."""
    calls = []

    def recorded(method, taps=(), **settings):
        calls.append(method)
        return method_options.method_options(method, taps, **settings)

    assert not hasattr(reproduction, 'METHODS') and paper_recipes.METHODS is method_options.METHODS
    monkeypatch.setattr(paper_recipes, 'method_options', recorded)
    monkeypatch.setattr(reproduction, 'method_options', recorded)
    monkeypatch.chdir(tmp_path)
    for row in paper_recipes.PAPER_ROWS:
        calls.clear()
        opt = paper_recipes.options(row)
        assert calls and {opt['model_type']} == {method_options.METHODS[m]['model_type'] for m in calls}, row
    paper_methods = {paper_recipes.ROW_METHODS.get(row.method, row.method) for row in paper_recipes.PAPER_ROWS}
    for run in reproduction.RUNS:
        calls.clear()
        opt = options(run, 0)
        assert len(calls) == 1 and opt['model_type'] == method_options.METHODS[calls[0]]['model_type'], run
        assert calls[0] in paper_methods | {'CRD'}, run
    # one method, each caller's settings: the paper's CSD row and the reproduction's CSD run
    paper_csd = paper_recipes.options(next(row for row in paper_recipes.PAPER_ROWS if row.method == 'CSD'))['train']
    run_csd = options('csd', 0)['train']
    assert run_csd['teacher_pixel_opt'] == paper_csd['teacher_pixel_opt']
    assert run_csd['contrastive_opt']['loss_weight'] == paper_csd['contrastive_opt']['loss_weight']
    assert (run_csd['csd']['width_mult'], paper_csd['csd']['width_mult']) == (reproduction.CSD['width_mult'], 0.25)


def test_csd_and_jt_start_from_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jt, csd = options('jt', 1), options('csd', 1)
    assert jt['path']['pretrain_network_g'] == csd['path']['pretrain_network_g']
    assert jt['train']['contrastive_opt']['loss_weight'] == 0 and csd['train']['contrastive_opt']['loss_weight'] > 0
    assert {k: v for k, v in jt['train'].items() if k not in ('csd', 'contrastive_opt')} == \
        {k: v for k, v in csd['train'].items() if k not in ('csd', 'contrastive_opt')}
    params = torch.load(jt['path']['pretrain_network_g'])['params']
    other_seed = torch.load(options('jt', 0)['path']['pretrain_network_g'])['params']
    assert any(not torch.equal(params[k], other_seed[k]) for k in params)  # one initialization per seed
    # the width-0.5 student of the slimmable EDSR is the recipe's student size
    assert csd['network_g']['num_feat'] * csd['train']['csd']['width_mult'] == reproduction.RECIPE['student'][
        'num_feat']


def test_memsr_runs_differ_only_in_initialization_and_distillation():
    runs = {m: options(m, 0) for m in ('memsr', 'memsr_random', 'memsr_init_only')}
    teacher = runs['memsr']['network_t']
    assert runs['memsr']['network_g']['widths'] == [teacher['num_feat']] * (2 * teacher['num_block'] + 2)
    assert runs['memsr']['path']['pretrain_network_g'] == reproduction.memsr_init_file()
    assert runs['memsr_random']['path']['pretrain_network_g'] is None
    assert runs['memsr_init_only']['train']['memsr_opt']['loss_weight'] == 0
    for name, opt in runs.items():
        assert opt['network_g'] == runs['memsr']['network_g'] and opt['network_t'] == teacher
        assert opt['train']['scheduler']['type'] == 'OneCycleLR'
        assert opt['train']['memsr']['bridges'] == reproduction.memsr_init_file()
    assert runs['memsr']['train']['memsr_opt'] == runs['memsr_random']['train']['memsr_opt'] == {
        'type': 'MemSRLoss',
        'loss_weight': 0.3,
        'epsilon': 1e-5
    }


def write_basicsr_log(folder: str, name: str, validations: dict, iter_times: list, losses=None) -> None:
    """A training log written by basicsr's own MessageLogger and SRModel validation logging (``losses(step)``: the
    logged loss terms of a step; default ``l_pix`` 0.1)."""
    import logging
    from basicsr.models.sr_model import SRModel
    from basicsr.utils.logger import MessageLogger
    from types import SimpleNamespace
    os.makedirs(os.path.join(folder, 'models'))
    open(os.path.join(folder, 'models', 'net_g_latest.pth'), 'w').close()  # marks the run as finished
    logger = logging.getLogger('basicsr')
    handler = logging.FileHandler(os.path.join(folder, f'train_{name}_20260101_000000.log'))
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s: %(message)s'))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        message = MessageLogger({
            'name': name,
            'logger': {
                'print_freq': 50,
                'use_tb_logger': False
            },
            'train': {
                'total_iter': 200
            }
        })
        for step, iter_time in enumerate(iter_times, 1):
            terms = losses(step) if losses else {'l_pix': 0.1}
            message({'epoch': 0, 'iter': 50 * step, 'lrs': [5e-4], 'time': iter_time, 'data_time': 0.01, **terms})
            for dataset, scores in validations.get(50 * step, {}).items():
                model = SimpleNamespace(metric_results=dict(zip(('psnr', 'ssim'), scores)))
                SRModel._log_validation_metric_values(model, 50 * step, dataset, None)
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(level)


def test_report_reads_the_logs_and_averages_over_seeds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    psnr = {0: {100: 27.5, 200: 28.25}, 1: {100: 27.25, 200: 28.75}}
    runs = {seed: reproduction.run_name('kd', seed) for seed in psnr}
    runs[2] = reproduction.rerun_name('kd', 1)  # the same configuration trained a second time
    psnr[2] = {100: 27.25, 200: 28.5}
    runs[3] = reproduction.run_name('scratch', 1)  # a baseline with seed 1 only: gains pair runs of the same seed
    psnr[3] = {100: 27.0, 200: 28.0}
    for seed, name in runs.items():
        validations = {i: {'Set5': (p, 0.8), 'Set14': (p - 2, 0.7)} for i, p in psnr[seed].items()}
        write_basicsr_log(os.path.join('experiments', name), name, validations, [0.5, 0.25 + seed, 0.75, 1.0])
    assert logs.history(reproduction.run_name('kd', 1))['Set5'] == [(100, 27.25, 0.8), (200, 28.75, 0.8)]
    assert logs.step_time(reproduction.run_name('kd', 1)) == (0.75 + 1.0) / 2
    assert report.final_scores('kd', [0, 1])['Set14'] == {'psnr': [26.25, 26.75], 'ssim': [0.7, 0.7]}
    assert report.mean_curve('kd', [0, 1], 'Set5') == [(100, 27.375), (200, 28.5)]
    assert report.mean_spread([28.25, 28.75]) == '28.5000 ± 0.2500'
    assert logs.last_iteration(reproduction.run_name('kd', 0)) == 200
    assert report.rerun_lines([0, 1]) == ('* kd, seed 1: Set5 28.7500 / 28.5000 dB (difference -0.2500), '
                                          'Set14 26.7500 / 26.5000 dB (difference -0.2500)')
    assert report.differences(['scratch', 'kd'], 'scratch', [0, 1]) == \
        '* kd - scratch: Set5 0.7500 dB (seed 1: +0.7500), Set14 0.7500 dB (seed 1: +0.7500)'


def test_diagnostics_differ_from_their_claim_run_only_in_what_they_say(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for diagnostic, (method, _) in reproduction.DIAGNOSTICS.items():
        changed, claim = options(diagnostic, 0), options(method, 0)
        losses = changed['train'].pop('feature_losses')  # a feature loss added to plain KD, at the named weight
        assert 'feature_losses' not in claim['train']
        assert [loss['loss_weight'] for loss in losses] == [float(diagnostic.split('_weight_')[1])] * len(losses)
        assert {k: v for k, v in changed.items() if k != 'name'} == {k: v for k, v in claim.items() if k != 'name'}


def test_final_losses_and_the_feature_term_fraction_from_a_basicsr_log(tmp_path, monkeypatch):
    """The calibration criterion: the feature terms over the pixel term, averaged over the last 4 logged steps."""
    monkeypatch.chdir(tmp_path)
    name = reproduction.run_name('at_weight_1000', 0)
    steps = {
        1: (0.5, 0.2, 9.0),
        2: (0.04, 0.02, 0.01),
        3: (0.03, 0.01, 0.02),
        4: (0.02, 0.01, 0.01),
        5: (0.03, 0.02, 0.0)
    }
    write_basicsr_log(
        os.path.join('experiments', name), name, {250: {
            'Set5': (29.5, 0.8),
            'Set14': (26.25, 0.7)
        }}, [1.0] * 5, lambda step: dict(zip(('l_pix', 'l_kd', 'l_ATLoss'), steps[step])))
    losses = logs.final_losses(name)
    assert losses == pytest.approx({'l_pix': 0.03, 'l_kd': 0.015, 'l_ATLoss': 0.01})
    assert logs.feature_term_fraction(name) == pytest.approx(0.01 / 0.03)
    assert report.calibration_table(
        [0, 1]).splitlines()[2:] == ['| `at_weight_1000` | AT | 1000 | 0 | 0.333 | 29.5000 | 26.2500 |']


def test_paired_table_pairs_final_psnr_by_seed(tmp_path, monkeypatch):
    """The report's paired comparison from basicsr logs: kd - scratch per seed, a kd seed without its scratch run."""
    monkeypatch.chdir(tmp_path)
    final = {
        ('kd', 0): 28.5,
        ('kd', 1): 28.75,
        ('kd', 2): 28.625,
        ('kd', 3): 30.0,
        ('scratch', 0): 28.25,
        ('scratch', 1): 28.5,
        ('scratch', 2): 28.5
    }
    for (method, seed), psnr in final.items():
        name = reproduction.run_name(method, seed)
        validations = {i: {'Set5': (psnr - d, 0.8), 'Set14': (psnr - 2 - d, 0.7)} for i, d in ((100, 1), (200, 0))}
        write_basicsr_log(os.path.join('experiments', name), name, validations, [0.5] * 4)
    set5, set14 = report.paired_comparisons([('kd', 'scratch')], [0, 1, 2, 3])
    # final Set5 PSNR, kd - scratch: seed 0 0.25, seed 1 0.25, seed 2 0.125 (seed 3: no scratch run)
    # mean 0.625 / 3 = 0.2083333; deviations 0.0416667, 0.0416667, -0.0833333 -> sum of squares 0.0104167, / 2
    # = 0.0052083 -> sd 0.0721688; half-width 4.302653 * 0.0721688 / sqrt(3) = 0.1792772
    # interval [0.0290561, 0.3876105] > 0
    assert set5.seeds == (0, 1, 2) and set5.missing_in_b == (3, ) and set5.missing_in_a == ()
    assert set5.differences == (0.25, 0.25, 0.125)
    assert set5.mean == pytest.approx(0.2083333, abs=1e-6) and set5.sd == pytest.approx(0.0721688, abs=1e-6)
    assert set5.low == pytest.approx(0.0290561, abs=1e-6) and set5.high == pytest.approx(0.3876105, abs=1e-6)
    assert set5.verdict == set14.verdict == 'resolved for'
    assert set14.dataset == 'Set14' and set14.differences == set5.differences  # Set14 = Set5 - 2 on both sides
    rows = report.paired_table([('kd', 'scratch')], [0, 1, 2, 3]).splitlines()
    assert rows[2] == ('| kd - scratch | Set5 | 3 | +0.2083 | 0.0722 | [+0.0291, +0.3876] | resolved for '
                       '| scratch missing for seed 3 |')


def test_a_claim_is_resolved_only_where_every_set_agrees():
    from kdplugins.experiments.statistics import RESOLVED_AGAINST, RESOLVED_FOR, compare_paired
    b = {0: 29.0, 1: 29.1, 2: 29.2}
    up = compare_paired({0: 29.10, 1: 29.22, 2: 29.31}, b, dataset='Set5')  # +0.10, +0.12, +0.11
    mixed = compare_paired({0: 29.10, 1: 29.05, 2: 29.40}, b, dataset='Set14')  # +0.10, -0.05, +0.20
    down = compare_paired({0: 28.90, 1: 28.98, 2: 29.09}, b, dataset='Set14')  # -0.10, -0.12, -0.11
    assert (up.verdict, mixed.verdict, down.verdict) == (RESOLVED_FOR, report.NOT_RESOLVED, RESOLVED_AGAINST)
    assert report.claim_verdict([up, up]) == RESOLVED_FOR
    assert report.claim_verdict([down, down]) == RESOLVED_AGAINST
    assert report.claim_verdict([up, mixed]) == report.claim_verdict([up, down]) == report.NOT_RESOLVED


def test_the_gpu_recipe_builds_its_own_runs_and_report(tmp_path, monkeypatch):
    """--recipe gpu: the larger student and batch, 6 workers, its own run names, report and efficiency cache; the
    options pass the option checks and AugKD's zoom-out patch stays above RFDN's 15-pixel minimum."""
    from kdplugins.runtime.option_schema import option_problems
    monkeypatch.setattr(report, 'RECIPE', reproduction.RECIPE)
    reproduction.configure(recipe='gpu')
    assert reproduction.run_name('augkd', 2) == 'reproduce_gpu_augkd_it1500_seed2'
    assert report.efficiency_cache() == os.path.join('experiments', 'reproduce_gpu_efficiency.json')
    assert reproduction.RECIPE['report'] == os.path.join('docs', 'results_gpu.md')
    for method in ('scratch', 'kd', 'augkd'):
        opt = options(method, 0)
        train_set = opt['datasets']['train']
        assert (train_set['batch_size_per_gpu'], train_set['num_worker_per_gpu']) == (16, 6)
        assert opt['network_g']['num_feat'] == 64 and opt['train']['total_iter'] == 1500
        assert option_problems({**opt, 'is_train': True}) == []
    assert train_set['gt_size'] // reproduction.RECIPE['scale'] // reproduction.RECIPE['scale'] >= 15
    with pytest.raises(ValueError, match='recipe must be cpu or gpu'):
        reproduction.configure(recipe='tpu')


def test_rebuilding_one_section_keeps_the_rest_of_the_report_verbatim(tmp_path, monkeypatch):
    """--sections: one claim's section is replaced up to the next heading; the header, the other sections and the
    efficiency table stay byte for byte; a section the report lacks is added after the last claim section."""
    monkeypatch.setitem(reproduction.RECIPE, 'report', str(tmp_path / 'results.md'))
    head = '# Results\n\nProduced by `a`.\n\n'
    rfdn = '## RFDN\n\nold rfdn\n\n| a |\n\n'
    memsr = '## MemSR: plain\n\nold memsr\n\n![x](y.png)\n\n'
    tail = '## Efficiency\n\n| b |\n'
    new_memsr = '## MemSR: plain\n\nThis section: produced by `b`.\n\nnew memsr\n'
    assert report.replace_sections(head + rfdn + memsr + tail, {'MemSR: plain': new_memsr}) == \
        head + rfdn + new_memsr + '\n' + tail
    assert report.replace_sections(head + memsr, {'MemSR: plain': new_memsr}) == head + new_memsr + '\n'
    assert report.replace_sections(head + rfdn + tail, {'CSD': '## CSD\n'}, ['RFDN', 'CSD', 'MemSR: plain']) == \
        head + rfdn + '## CSD\n\n' + tail  # a new claim's section: after the last claim section
    # through write_report: the CSD section rebuilt from the (here absent) runs, quoting its command
    sections = {key: f'## {title}\n\nold {key}\n\n' for key, title, _, _ in reproduction.CLAIMS}
    with open(reproduction.RECIPE['report'], 'w') as f:
        f.write(head + ''.join(sections.values()) + tail)
    monkeypatch.chdir(tmp_path)
    report.write_report([0], {}, 'python scripts/reproduce.py --report-only --sections csd', ['csd'])
    with open(reproduction.RECIPE['report']) as f:
        text = f.read()
    _, rfdn, csd, memsr, *others, efficiency = re.split(r'(?m)^(?=## )', text)
    assert text.startswith(head) and (rfdn, memsr, efficiency) == (sections['rfdn'], sections['memsr'], tail)
    assert others == list(sections.values())[3:]
    assert 'old csd' not in csd
    assert csd.splitlines()[2] == ('This section: produced by `python scripts/reproduce.py --report-only --sections '
                                   'csd` (scripts/reproduce.py).')
    assert '* csd - jt: Set5 n/a, Set14 n/a' in csd
