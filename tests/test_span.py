"""SPAN (kdplugins/archs/span_arch.py): spandrel's network under BasicSR's registry, the official state_dict layout,
the reparameterised convolutions fused for inference, and the published parameter counts."""
import pytest
import torch
from basicsr.archs import build_network
from spandrel.architectures.SPAN import SPAN as SpandrelSPAN

from kdplugins.archs.span_arch import FusedConv3XC
from kdplugins.deploy.network import load_network
from kdplugins.utils.efficiency import count_parameters

# (feature_channels, parameters of the inference form at x4, source; docs/span_convlora.md)
PUBLISHED = [
    (48, 426_288, 'the default width of the official code (no published count checked here)'),
    (28, 150_688, 'NTIRE challenge SPAN (test_demo.py: feature_channels=28), 0.151 M'),
    (26, 130_828, 'DSCLoRA (DSCF-SR models/team23_DSCF.py: feature_channels=26), 0.131 M'),
]


def official_layout(feature_channels: int, seed: int = 0) -> SpandrelSPAN:
    """spandrel's SPAN with seeded weights: the official checkpoint layout (that file is not available here)."""
    torch.manual_seed(seed)
    return SpandrelSPAN(num_in_ch=3, num_out_ch=3, feature_channels=feature_channels, upscale=4)


def perturbed(net: torch.nn.Module) -> torch.nn.Module:
    """Biases of a fresh SPAN are small; give every tensor a spread so that the comparisons can fail."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.02)
    return net


def test_span_is_spandrels_network_with_the_official_layout_loaded_strictly():
    reference = perturbed(official_layout(16))
    net = build_network({'type': 'SPAN', 'num_in_ch': 3, 'num_out_ch': 3, 'feature_channels': 16, 'upscale': 4})
    assert list(net.state_dict()) == list(reference.state_dict())
    net.load_state_dict(reference.state_dict(), strict=True)
    x = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for mode in (True, False):
            reference.train(mode)
            net.train(mode)
            assert torch.equal(net(x), reference(x)), f'training={mode}'
    # the official code keeps the fused weights out of training (DDP without find_unused_parameters)
    frozen = sorted(n for n, p in net.named_parameters() if not p.requires_grad)
    assert frozen and all('.eval_conv.' in n for n in frozen) and len(frozen) == 2 * 20


def test_reparameterised_form_loads_the_training_checkpoint_and_equals_the_training_form():
    trained = perturbed(official_layout(16))
    x = torch.rand(1, 3, 14, 11, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        training_form = trained.train()(x)
        fused_by_spandrel = trained.eval()(x)
    fused = build_network({'type': 'SPAN', 'feature_channels': 16, 'reparameterized': True}).eval()
    assert sum(isinstance(m, FusedConv3XC) for m in fused.modules()) == 20
    state = trained.state_dict()
    for key in [k for k in state if '.eval_conv.' in k]:
        state[key] = torch.zeros_like(state[key])  # a stale eval_conv in the file must not matter
    fused.load_state_dict(state, strict=True)
    assert set(fused.state_dict()) == {k for k in trained.state_dict() if '.sk.' not in k and '.conv.' not in k}
    with torch.no_grad():
        out = fused(x)
    assert torch.equal(out, fused_by_spandrel)
    # fused 3x3 against 1x1 -> 3x3 -> 1x1 + 1x1 in float32: equal up to rounding (docs/span_convlora.md)
    assert (out - training_form).abs().max() <= 1e-5 * training_form.abs().max()
    assert (out - training_form).abs().max() > 0  # two different float paths


@pytest.mark.parametrize('feature_channels,published,source', PUBLISHED)
def test_parameters_at_the_published_configurations(feature_channels, published, source):
    training = build_network({'type': 'SPAN', 'feature_channels': feature_channels})
    inference = build_network({'type': 'SPAN', 'feature_channels': feature_channels, 'reparameterized': True})
    assert count_parameters(inference) == published, source
    c = feature_channels  # direct count: 20 3x3 convs (conv_1 from 3 channels), conv_cat 1x1, upsampler 3x3 to 48
    direct = (3 * 9 * c + c) + 19 * (c * 9 * c + c) + (4 * c * c + c) + (c * 9 * 48 + 48)
    assert direct == published
    assert count_parameters(training) > published  # the training form adds the 1x1 branches
    assert round(published / 1e6, 3) == {48: 0.426, 28: 0.151, 26: 0.131}[feature_channels]


def test_kd_export_loads_a_training_checkpoint_into_the_reparameterised_form(tmp_path):
    """``load_network`` (kd-export, kd-infer) checks keys before loading: SPAN converts the layout first."""
    trained = perturbed(official_layout(8)).eval()
    torch.save({'params': trained.state_dict()}, tmp_path / 'span.pth')
    (tmp_path / 'span.yml').write_text('type: SPAN\nfeature_channels: 8\nreparameterized: true\n')
    deployed = load_network(str(tmp_path / 'span.yml'), str(tmp_path / 'span.pth')).net
    assert count_parameters(deployed) == 3 * 9 * 8 + 8 + 19 * (8 * 9 * 8 + 8) + (4 * 8 * 8 + 8) + (8 * 9 * 48 + 48)
    x = torch.rand(1, 3, 9, 7, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(deployed(x), trained(x))
