"""Validation and the teacher check of window-attention networks (SwinIR) on sizes that are not window multiples."""
import torch
import torch.nn.functional as F
from basicsr.archs import build_network

from kdplugins.distill.teacher import FrozenTeacher
from kdplugins.utils.padding import forward_padded, window_size_of

SWINIR = {
    'type': 'SwinIR',
    'upscale': 2,
    'img_size': 8,
    'window_size': 4,
    'embed_dim': 12,
    'depths': [1],
    'num_heads': [2],
    'mlp_ratio': 1,
    'upsampler': 'pixelshuffle',
    'img_range': 1.
}


def test_padded_forward_equals_the_network_on_the_padded_input_cropped():
    torch.manual_seed(0)
    net = build_network(dict(SWINIR)).eval()
    assert window_size_of(net) == window_size_of(FrozenTeacher(net)) == 4
    x = torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        out = forward_padded(net, x, 2)
        expected = net(F.pad(x, (0, 2, 0, 2), 'reflect'))[..., :20, :28]
        fitting = torch.rand(1, 3, 12, 16)
        assert torch.equal(forward_padded(net, fitting, 2), net(fitting))
    assert out.shape == (1, 3, 20, 28) and torch.equal(out, expected)
    edsr = build_network({'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 4, 'num_block': 1, 'upscale': 2})
    assert window_size_of(edsr) == 1
