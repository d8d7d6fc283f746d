"""SlimEDSR: BasicSR's EDSR as a channel-splitting network (CSSR-Net, CSD paper Sec. 3.1, Fig. 2)."""
from basicsr.archs.edsr_arch import EDSR
from basicsr.utils.registry import ARCH_REGISTRY
from typing import Sequence

from kdplugins.archs.slimmable import SliceSpec, SlimmableMixin, active_channels, make_slimmable, upsampler_specs
from kdplugins.utils.registry import register


@register(ARCH_REGISTRY)
class SlimEDSR(SlimmableMixin, EDSR):
    """EDSR (same arguments, parameter names and initialization as ``basicsr.archs.edsr_arch.EDSR``) whose
    ``forward(x, width_mult)`` runs the student CSSR-Net made of the first ``int(num_feat * width_mult)`` channels of
    every layer (the RGB input of ``conv_first`` and output of ``conv_last`` stay whole). At width 1.0 it is EDSR:
    BasicSR EDSR checkpoints load into it with ``strict=True`` and give the same outputs.
    """

    def __init__(self,
                 num_in_ch: int,
                 num_out_ch: int,
                 num_feat: int = 64,
                 num_block: int = 16,
                 upscale: int = 4,
                 res_scale: float = 1,
                 img_range: float = 255.,
                 rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040)):
        super().__init__(num_in_ch, num_out_ch, num_feat, num_block, upscale, res_scale, img_range, rgb_mean)
        self.arch_options = dict(
            num_in_ch=num_in_ch,
            num_out_ch=num_out_ch,
            num_feat=num_feat,
            num_block=num_block,
            upscale=upscale,
            res_scale=res_scale,
            img_range=img_range,
            rgb_mean=list(rgb_mean))
        specs = {'conv_first': SliceSpec(fixed_in=True), 'conv_last': SliceSpec(fixed_out=True)}
        specs.update(upsampler_specs(self.upsample))
        self.width_state = make_slimmable(self, specs)

    def feature_channels(self) -> int:
        return self.arch_options['num_feat']

    def plain_options(self, width_mult: float) -> dict:
        num_feat = active_channels(self.feature_channels(), width_mult)
        return {'type': 'EDSR', **self.arch_options, 'num_feat': num_feat}
