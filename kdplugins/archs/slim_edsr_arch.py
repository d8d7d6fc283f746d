"""SlimEDSR: BasicSR's EDSR as a channel-splitting network (CSSR-Net, CSD paper Sec. 3.1, Fig. 2)."""
import inspect
from basicsr.archs.edsr_arch import EDSR
from basicsr.utils.registry import ARCH_REGISTRY

from kdplugins.archs.slimmable import (SliceSpec, SlimmableMixin, active_channels, make_slimmable, parent_arguments,
                                       upsampler_specs)
from kdplugins.utils.registry import register


@register(ARCH_REGISTRY)
class SlimEDSR(SlimmableMixin, EDSR):
    """EDSR (same arguments, parameter names and initialization as ``basicsr.archs.edsr_arch.EDSR``) whose
    ``forward(x, width_mult)`` runs the student CSSR-Net made of the first ``int(num_feat * width_mult)`` channels of
    every layer (the RGB input of ``conv_first`` and output of ``conv_last`` stay whole). At width 1.0 it is EDSR:
    BasicSR EDSR checkpoints load into it with ``strict=True`` and give the same outputs.
    """

    __signature__ = inspect.signature(EDSR)

    def __init__(self, *args, **kwargs):
        arch_options = parent_arguments(EDSR, args, kwargs)
        super().__init__(*args, **kwargs)
        self.arch_options = arch_options
        specs = {'conv_first': SliceSpec(fixed_in=True), 'conv_last': SliceSpec(fixed_out=True)}
        specs.update(upsampler_specs(self.upsample))
        self.width_state = make_slimmable(self, specs)

    def feature_channels(self) -> int:
        return self.arch_options['num_feat']

    def plain_options(self, width_mult: float) -> dict:
        num_feat = active_channels(self.feature_channels(), width_mult)
        return {'type': 'EDSR', **self.arch_options, 'num_feat': num_feat}
