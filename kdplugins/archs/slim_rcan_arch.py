"""SlimRCAN: BasicSR's RCAN as a channel-splitting network (CSSR-Net, CSD paper Sec. 3.1)."""
import inspect
from basicsr.archs.rcan_arch import RCAN
from basicsr.utils.registry import ARCH_REGISTRY

from kdplugins.archs.slimmable import (SliceSpec, SlimmableMixin, active_channels, make_slimmable, parent_arguments,
                                       upsampler_specs)
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

    __signature__ = inspect.signature(RCAN)

    def __init__(self, *args, **kwargs):
        arch_options = parent_arguments(RCAN, args, kwargs)
        super().__init__(*args, **kwargs)
        self.arch_options = arch_options
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
