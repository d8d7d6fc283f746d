"""AIM 2020 efficiency counting (kdplugins/utils/efficiency.py) against the published figures and hand counts."""
import cv2
import json
import os
import pytest
import torch
import torch.nn.functional as F
from basicsr.archs import arch_util, build_network
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import run_script
from torch import nn

import kdplugins  # noqa: F401  (shims and registration)
from kdplugins.utils import efficiency

LR_256 = [1, 3, 256, 256]


def test_msrresnet_reproduces_the_published_baseline():
    """Report Sec. 2.2: 1,517,571 params, 166.36 G FLOPs, 292.55 M activations, 37 convs (256x256 input)."""
    net = build_network({'type': 'MSRResNet', 'num_feat': 64, 'num_block': 16, 'upscale': 4})
    counts = efficiency.count_ops(net, LR_256)
    assert counts.params == 1_517_571
    assert counts.activations == 292_552_704  # 292.55 M
    assert counts.convs == 37
    assert counts.macs == 166_207_684_608  # sum over the 37 convs of out_elements * in_channels * 9
    assert counts.flops == pytest.approx(166.36e9, rel=0.005)


def test_flops_rule_gives_166_36_on_the_reference_msrresnet(monkeypatch):
    """The reference MSRResNet (KAIR) calls F.relu in its residual blocks, where BasicSR has an nn.ReLU module.

    With that block, conv MACs without bias plus the 155,189,248 outputs of the nn.LeakyReLU module give exactly
    the published 166.36 G; BasicSR's nn.ReLU adds 67.1 M more (166.43 G).
    """

    def reference_block(self, x):
        return x + self.conv2(F.relu(self.conv1(x))) * self.res_scale

    monkeypatch.setattr(arch_util.ResidualBlockNoBN, 'forward', reference_block)
    net = build_network({'type': 'MSRResNet', 'num_feat': 64, 'num_block': 16, 'upscale': 4})
    counts = efficiency.count_ops(net, LR_256)
    assert counts.elementwise_ops == 155_189_248
    assert round(counts.flops / 1e9, 2) == 166.36


def test_rfdn_reproduces_the_published_winner():
    """Report Table 1, NJU MCG: 0.433 M params, 27.10 G FLOPs, 112.03 M activations, 64 convs."""
    if 'RFDN' not in ARCH_REGISTRY:
        pytest.skip('arch RFDN is not registered: kdplugins/archs/rfdn_arch.py is missing.')
    counts = efficiency.count_ops(build_network({'type': 'RFDN'}), LR_256)
    assert counts.params == 433_448
    assert round(counts.activations / 1e6, 2) == 112.03
    assert counts.convs == 64
    assert counts.flops == pytest.approx(27.10e9, rel=0.01)


class TwoConvs(nn.Module):
    """3x3 conv, LeakyReLU module, grouped strided 1x1 conv, functional ReLU (not counted by the protocol)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.LeakyReLU(0.1)
        self.conv2 = nn.Conv2d(4, 2, 1, stride=2, groups=2)

    def forward(self, x):
        return F.relu(self.conv2(self.act(self.conv1(x))))


def test_counts_match_a_hand_computation():
    counts = efficiency.count_ops(TwoConvs(), [1, 3, 8, 8])
    conv1_out, conv2_out = 4 * 8 * 8, 2 * 4 * 4
    assert counts.params == (4 * 3 * 9 + 4) + (2 * 2 * 1 + 2)
    assert counts.macs == conv1_out * 3 * 9 + conv2_out * (4 // 2) * 1
    assert counts.elementwise_ops == conv1_out  # the LeakyReLU module; F.relu is not counted
    assert counts.flops == counts.macs + conv1_out
    assert counts.activations == conv1_out + conv2_out
    assert counts.convs == 2


def test_transposed_conv_and_linear_macs():
    net = nn.Sequential(nn.ConvTranspose2d(2, 3, 4, stride=2, padding=1), nn.Flatten(), nn.Linear(3 * 10 * 10, 5))
    counts = efficiency.count_ops(net, [1, 2, 5, 5])
    assert counts.macs == (2 * 5 * 5) * 3 * 16 + 300 * 5  # each input element meets 3 x 16 taps; 300 x 5 weights
    assert counts.activations == 3 * 10 * 10
    assert counts.convs == 1


def test_meta_device_counts_equal_a_real_forward():
    net = build_network({'type': 'MSRResNet', 'num_feat': 8, 'num_block': 2, 'upscale': 4})
    real = efficiency.counted_forward(net, torch.rand(1, 3, 16, 16))
    assert efficiency.count_ops(net, [1, 3, 16, 16]) == real


def test_arch_options_are_yaml_scalars():
    options = efficiency.parse_arch_options(['num_feat=8', 'scale=0.5', 'flag=true', 'mode=bilinear'])
    assert options == {'num_feat': 8, 'scale': 0.5, 'flag': True, 'mode': 'bilinear'}
    with pytest.raises(ValueError, match='key=value'):
        efficiency.parse_arch_options(['num_feat'])


def test_network_sections_of_an_option_file(tmp_path):
    path = tmp_path / 'x.yml'
    path.write_text('network_g:\n  type: MSRResNet\n  num_feat: 8\nnetwork_t:\n  type: RFDN\n')
    assert efficiency.network_options_from_yaml(str(path), 'network_t') == {'type': 'RFDN'}
    with pytest.raises(KeyError, match="network_g', 'network_t"):
        efficiency.network_options_from_yaml(str(path), 'network_s')


def test_script_writes_the_module_counts(tmp_path):
    arch_opt = ['num_feat=8', 'num_block=1', 'upscale=2']
    args = [
        '--arch', 'MSRResNet', '--arch-opt', *arch_opt, '--arch', 'RFDN', '--arch-opt', 'channels=8', 'num_blocks=1',
        'upscale=2', '--input-size', '32', '--repeat', '3', '--warmup', '1', '--device', 'cpu', '--out-dir',
        str(tmp_path)
    ]
    wrong = run_script('scripts/benchmark_efficiency.py', *args, '--psnr', '30.5', cwd=tmp_path, check=False)
    assert wrong.returncode != 0 and '--psnr gives 1 values for 2 networks' in wrong.stderr
    assert not (tmp_path / 'efficiency.json').exists()
    run_script('scripts/benchmark_efficiency.py', *args, '--psnr', '30.5', '31.25', cwd=tmp_path)
    plot = cv2.imread(str(tmp_path / 'tradeoff.png'))
    assert plot.shape == (600, 840, 3) and plot.std() > 0
    record, _ = json.loads((tmp_path / 'efficiency.json').read_text())['networks']
    net = build_network({'type': 'MSRResNet', **efficiency.parse_arch_options(arch_opt)})
    expected = efficiency.count_ops(net, [1, 3, 32, 32])
    assert record['counts'] == {**vars(expected), 'flops': expected.flops}
    assert record['input_shape'] == [1, 3, 32, 32]
    assert len(record['runtimes_s']) == 3
    assert record['peak_memory_bytes'] > efficiency.held_tensor_bytes(net, torch.rand(1, 3, 32, 32))
    assert record['memory_method'].startswith('CPU')
    assert '| MSRResNet(num_feat=8, num_block=1, upscale=2) | 4,531 |' in (tmp_path / 'efficiency.md').read_text()


def test_script_names_an_unknown_arch_with_close_names(tmp_path):
    result = run_script(
        'scripts/benchmark_efficiency.py', '--arch', 'RFDNN', '--out-dir', str(tmp_path), cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "network RFDNN(): unknown arch type 'RFDNN'. Close registered names: RFDN," in result.stderr
    assert not (tmp_path / 'efficiency.json').exists()


def test_networks_measured_in_turns_keep_their_counts_and_get_one_runtime_per_round():
    """measure_in_turns: the counts of each network are those of count_ops alone, each network gets exactly one
    timed forward per round, and the report of one network alone is measure's."""
    small = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}
    large = dict(small, num_feat=16, num_block=2)
    reports = efficiency.measure_in_turns([('small', small), ('large', large)], 12, torch.device('cpu'), 4, 1)
    assert [r.name for r in reports] == ['small', 'large']
    for report, options in zip(reports, (small, large)):
        assert report.counts == efficiency.count_ops(build_network(options), [1, 3, 12, 12])
        assert len(report.runtimes_s) == 4 and report.warmup == 1 and report.network_options == options
    alone = efficiency.measure('small', small, 12, torch.device('cpu'), 3, 0)
    assert alone.counts == reports[0].counts and len(alone.runtimes_s) == 3


def test_cpu_memory_probe_prints_nothing(capfd):
    """The torch profiler's C++ library prints its stages and a failed GPU probe on CPU-only machines; the CPU memory
    probe keeps file descriptor 2 quiet while it runs (and gives it back afterwards)."""
    net = build_network({'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2})
    efficiency.peak_memory(net, torch.rand(1, 3, 12, 12))
    efficiency.peak_memory(net, torch.rand(1, 3, 12, 12))
    os.write(2, b'fd 2 works again\n')
    out, err = capfd.readouterr()
    assert err == 'fd 2 works again\n' and out == ''
