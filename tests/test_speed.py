"""``train.speed``: channels_last, bf16 / fp16 autocast (fp16 with a gradient scaler), the teacher's precision.

Each option trains KD and AugKD on CPU with first-step losses within a stated tolerance of fp32; bf16 under 2-process
torchrun keeps the ranks bitwise equal (fp16 resume: tests/test_training_cli.py). Timings: scripts/
benchmark_train_step.py and docs/training.md, not here."""
import pytest
import re
import torch
from conftest import build, kd_options, run_module, save_teacher, train_batches, write_yaml
from torch import nn

from kdplugins.distill.speed import (DTYPES, SLIMMABLE_COMPILE_VERIFIED, SPEED_OPTIONS, CompileError, MixedPrecision,
                                     compile_in_place)
from kdplugins.utils.declared_options import read_block

FITNET = [{'type': 'FitNetLoss', 'student_layer': 'body.0', 'teacher_layer': 'body.1', 'loss_weight': 0.1}]
# absolute tolerance of every first-step loss against fp32. The terms are means of per-pixel (or per-feature) errors of
# values of order 1 (images in [0, 1]), so rounding the outputs to a 16-bit type moves them by about that type's unit
# roundoff: bf16 2^-8, fp16 2^-11 (measured: at most 8.4e-4 and 4.6e-5). channels_last only reorders sums.
SETTINGS = {
    'channels_last': ({
        'channels_last': True
    }, 1e-6),
    'bf16': ({
        'precision': 'bf16'
    }, 2**-8),
    'fp16': ({
        'precision': 'fp16'
    }, 2**-11),
    'teacher-bf16': ({
        'teacher_precision': 'bf16'
    }, 2**-8),
    'teacher-fp16': ({
        'teacher_precision': 'fp16'
    }, 2**-11),
}


@pytest.fixture(scope='module')
def teacher_path(tmp_path_factory):
    return save_teacher(tmp_path_factory.mktemp('teacher') / 'teacher.pth')


def first_step_losses(tmp_path, monkeypatch, lmdbs, teacher_path, model_type: str, speed: dict):
    opt = kd_options(lmdbs, teacher_path, name='speed', feature_losses=FITNET, speed=speed)
    opt['model_type'] = model_type
    tmp_path.mkdir()
    model, parsed = build(tmp_path, monkeypatch, opt)
    model.feed_data(train_batches(parsed, 1)[0])
    model.optimize_parameters(1)
    return model, dict(model.log_dict)


@pytest.mark.parametrize('model_type', ['KDModel', 'AugKDModel'])
def test_each_option_trains_with_first_step_losses_close_to_fp32(tmp_path, monkeypatch, tiny_lmdbs, teacher_path,
                                                                 model_type):
    _, reference = first_step_losses(tmp_path / 'fp32', monkeypatch, tiny_lmdbs, teacher_path, model_type, {})
    assert set(reference) >= {'l_pix', 'l_kd', 'l_FitNetLoss'}
    for setting, (speed, tolerance) in SETTINGS.items():
        model, losses = first_step_losses(tmp_path / setting, monkeypatch, tiny_lmdbs, teacher_path, model_type, speed)
        assert losses.keys() == reference.keys(), setting
        for name, value in losses.items():
            assert abs(value - reference[name]) <= tolerance, (setting, name, value, reference[name])
        if setting != 'channels_last':
            assert losses != reference, f'{setting} changed nothing'  # the option took effect
        weight = model.net_g.conv_first.weight
        assert weight.dtype == torch.float32  # fp32 master weights in every setting
        assert weight.is_contiguous(memory_format=torch.channels_last) == speed.get('channels_last', False)
        assert model.lq.is_contiguous(memory_format=torch.channels_last) == speed.get('channels_last', False)
        teacher_dtype = next(model.net_t.parameters()).dtype
        assert teacher_dtype == DTYPES[speed.get('teacher_precision', 'fp32')], setting
        assert (model.precision.scaler is not None) == (speed.get('precision') == 'fp16')


def test_bf16_under_two_process_torchrun_keeps_ranks_bitwise_equal(tmp_path, tiny_lmdbs, teacher_path):
    speed = {'precision': 'bf16', 'teacher_precision': 'bf16', 'channels_last': True}
    opt = kd_options(
        tiny_lmdbs, teacher_path, name='bf16_ddp', feature_losses=FITNET, check_rank_sync=True, speed=speed)
    opt['datasets']['train']['batch_size_per_gpu'] = 2
    result = run_module(
        'kdplugins.train',
        '-opt',
        str(write_yaml(tmp_path / 'bf16_ddp.yml', opt)),
        '--launcher',
        'pytorch',
        cwd=tmp_path,
        torchrun=2)
    log = ''.join(p.read_text() for p in sorted((tmp_path / 'experiments' / 'bf16_ddp').glob('train_*.log')))
    digests = re.findall(r'Rank weight digests at iter (-?\d+): ([0-9a-f]{64}) ([0-9a-f]{64})', log)
    assert [d[0] for d in digests] == ['2', '4', '-1'], result.stderr[-3000:]
    assert all(rank0 == rank1 for _, rank0, rank1 in digests)
    assert digests[0][1] != digests[1][1]


def test_gradient_scaler_state_is_restored():
    saved = MixedPrecision('fp16', torch.device('cpu'))
    saved.scaler.scale(torch.ones(()))
    saved.scaler.update(new_scale=1024.0)
    restored = MixedPrecision('fp16', torch.device('cpu'))
    assert restored.state_dict() != saved.state_dict()
    restored.load_state_dict(saved.state_dict())
    assert restored.state_dict() == saved.state_dict()
    assert MixedPrecision('bf16', torch.device('cpu')).state_dict() is None


UNKNOWN_KEY = ('train.speed.channel_last: unknown option (did you mean channels_last?). Valid options: channels_last, '
               'compile, compile_backend, precision, teacher_precision.')


@pytest.mark.parametrize('speed, message', [({
    'precision': 'fp8'
}, "train.speed.precision: 'fp8' is not one of 'fp32', 'bf16', 'fp16'."), ({
    'channel_last': True
}, UNKNOWN_KEY)])
def test_bad_speed_options_name_the_option(speed, message):
    with pytest.raises(ValueError) as error:
        read_block(speed, SPEED_OPTIONS, 'train.speed')
    assert str(error.value) == message


@pytest.mark.parametrize('model_type', ['KDModel', 'AugKDModel'])
def test_compiled_student_and_teacher_record_the_same_features_as_eager(tmp_path, monkeypatch, tiny_lmdbs, teacher_path,
                                                                        model_type):
    """torch.compile (aot_eager: dynamo and AOTAutograd without code generation, seconds instead of a minute) of both
    networks in place: feature taps still record (in their recording scopes), losses and features equal eager's,
    checkpoints keep their keys.
    AugKD runs the networks on the LR batch and on the smaller zoom-out batch (a second shape)."""
    runs = {}
    for name, speed in (('eager', {}), ('compiled', {
            'compile': ['student', 'teacher'],
            'compile_backend': 'aot_eager'
    })):
        (tmp_path / name).mkdir()
        opt = kd_options(tiny_lmdbs, teacher_path, name='compile', feature_losses=FITNET, speed=speed)
        opt['model_type'] = model_type
        model, parsed = build(tmp_path / name, monkeypatch, opt)
        model.feed_data(train_batches(parsed, 1)[0])
        losses = {k: v.detach() for k, v in model.compute_losses(1).items()}
        with model.student_taps.recording() as student_features:
            model.net_g(model.lq)
        with model.teacher_taps.recording() as teacher_features:
            model.net_t(model.lq)
        features = {k: v.detach() for k, v in student_features.items()}
        features.update({'t.' + k: v.detach() for k, v in teacher_features.items()})
        runs[name] = (model, losses, features)
    (eager, eager_losses, eager_features), (compiled, losses, features) = runs['eager'], runs['compiled']
    assert losses.keys() == eager_losses.keys() and features.keys() == eager_features.keys() and len(features) == 2
    for key in losses:
        assert torch.allclose(losses[key], eager_losses[key], rtol=1e-5, atol=1e-7), key
    for key in features:
        assert torch.allclose(features[key], eager_features[key], rtol=1e-5, atol=1e-6), key
    assert compiled.net_g._compiled_call_impl is not None and compiled.net_t._compiled_call_impl is not None
    assert list(compiled.net_g.state_dict()) == list(eager.net_g.state_dict())


def test_compiled_slimmable_student_runs_both_widths(tmp_path, monkeypatch, tiny_lmdbs):
    """CSD with a compiled network: the student (width 0.5) and teacher (width 1.0) passes of one step, each width
    compiled once, equal eager's; the model's test() at the student's width too. On torch 2.3.1 this failed (the
    teacher pass returned the student's output): below the verified version the option is refused."""
    from test_csd import csd_options
    if torch.__version__ < SLIMMABLE_COMPILE_VERIFIED:  # the oldest supported torch: refused, not trained wrong
        speed = {'compile': ['student'], 'compile_backend': 'aot_eager'}
        with pytest.raises(CompileError, match='compiles one width.s graph for all of them'):
            build(tmp_path, monkeypatch, csd_options(tiny_lmdbs, train_opt={'speed': speed}))
        return
    results = {}
    for name, speed in (('eager', {}), ('compiled', {'compile': ['student'], 'compile_backend': 'aot_eager'})):
        (tmp_path / name).mkdir()
        model, parsed = build(tmp_path / name, monkeypatch, csd_options(tiny_lmdbs, train_opt={'speed': speed}))
        model.feed_data(train_batches(parsed, 1)[0])
        losses = {k: v.detach() for k, v in model.compute_losses(1).items()}
        model.test()
        assert (model.net_g._compiled_call_impl is not None) == (name == 'compiled')
        results[name] = (losses, model.output.detach())
    (eager_losses, eager_output), (losses, output) = results['eager'], results['compiled']
    assert losses.keys() == eager_losses.keys() == {'l_pix', 'l_pix_t', 'l_csd'}
    for key in losses:
        assert torch.allclose(losses[key], eager_losses[key], rtol=1e-5, atol=1e-7), key
    assert torch.allclose(output, eager_output, rtol=1e-5, atol=1e-6)


def test_speed_presets_combine_and_an_unknown_one_names_the_known_ones():
    from kdplugins.experiments.speed_benchmark import speed_preset
    assert speed_preset('channels_last+bf16+teacher-bf16') == {
        'channels_last': True,
        'precision': 'bf16',
        'teacher_precision': 'bf16'
    }
    assert read_block(speed_preset('compile'), SPEED_OPTIONS, 'train.speed')['compile'] == ['student', 'teacher']
    with pytest.raises(ValueError, match=r"Unknown speed setting 'bf17'; known: channels_last, bf16, .* \(join with"):
        speed_preset('channels_last+bf17')


def test_compiling_a_slimmable_network_is_refused_below_the_verified_torch(monkeypatch):
    """The guard itself, on any torch: a slimmable arch is refused under an older version, a plain arch compiles."""
    from basicsr.archs import build_network
    from torch.torch_version import TorchVersion
    monkeypatch.setattr(torch, '__version__', TorchVersion('2.3.1'))
    slim = build_network({
        'type': 'SlimEDSR',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': 8,
        'num_block': 1,
        'upscale': 2
    })
    with pytest.raises(CompileError, match=r'torch 2\.3\.1 compiles one width.s graph .* torch >= 2\.14'):
        compile_in_place(slim, 'aot_eager')
    plain = nn.Conv2d(3, 3, 3)
    compile_in_place(plain, 'aot_eager')
    assert plain._compiled_call_impl is not None and slim._compiled_call_impl is None
