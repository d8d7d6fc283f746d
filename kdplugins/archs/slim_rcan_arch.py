"""SlimRCAN: BasicSR's RCAN as a channel-splitting network (CSSR-Net, CSD paper Sec. 3.1)."""
from basicsr.archs.rcan_arch import RCAN
from basicsr.utils.registry import ARCH_REGISTRY
from typing import Sequence

from kdplugins.archs.slimmable import SliceSpec, SlimmableMixin, active_channels, make_slimmable, upsampler_specs
from kdplugins.utils.registry import register


@register(ARCH_REGISTRY)
class SlimRCAN(SlimmableMixin, RCAN):
    """RCAN (same arguments, parameter names and initialization as ``basicsr.archs.rcan_arch.RCAN``) whose
    ``forward(x, width_mult)`` runs the student made of the first ``int(C * width_mult)`` channels of every layer,
    the channel-attention squeeze convs included (``C / squeeze_factor`` channels). At width 1.0 it is RCAN.

    The student equals BasicSR's ``RCAN(num_feat=int(num_feat * w))`` when its attention keeps
    ``int(num_feat * w) // squeeze_factor`` channels, which holds whenever ``num_feat`` is a multiple of
    ``squeeze_factor`` (as in the default 64 / 16); :meth:`plain_options` checks it.
    """

    def __init__(self,
                 num_in_ch: int,
                 num_out_ch: int,
                 num_feat: int = 64,
                 num_group: int = 10,
                 num_block: int = 16,
                 squeeze_factor: int = 16,
                 upscale: int = 4,
                 res_scale: float = 1,
                 img_range: float = 255.,
                 rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040)):
        super().__init__(num_in_ch, num_out_ch, num_feat, num_group, num_block, squeeze_factor, upscale, res_scale,
                         img_range, rgb_mean)
        self.arch_options = dict(
            num_in_ch=num_in_ch,
            num_out_ch=num_out_ch,
            num_feat=num_feat,
            num_group=num_group,
            num_block=num_block,
            squeeze_factor=squeeze_factor,
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
        squeeze = self.arch_options['squeeze_factor']
        slim_squeeze = active_channels(self.feature_channels() // squeeze, width_mult, 'the channel attention')
        if num_feat // squeeze != slim_squeeze:
            raise ValueError(f'SlimRCAN at width {width_mult} keeps {slim_squeeze} channel-attention channels, but '
                             f'BasicSR RCAN(num_feat={num_feat}, squeeze_factor={squeeze}) has {num_feat // squeeze}: '
                             'no BasicSR RCAN equals this student. Use a num_feat that is a multiple of '
                             'squeeze_factor.')
        return {'type': 'RCAN', **self.arch_options, 'num_feat': num_feat}
