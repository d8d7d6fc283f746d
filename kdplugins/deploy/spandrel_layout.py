"""State dicts in the key layouts that spandrel detects, for the archs it knows; a clear refusal for the others.

spandrel (PyPI; chaiNNer and ComfyUI load super-resolution models through it) has no option file: it recognises an
architecture from the keys of a state_dict and reads the hyper-parameters from tensor shapes, guessing what shapes do
not show (``spandrel/architectures/<Arch>/__init__.py``: ``detect`` and ``load``; read for spandrel 0.4.2). Of the
archs of kdplugins and the BasicSR archs its option files train, spandrel 0.4.2 knows three (docs/deploy.md has the
table measured by ``python scripts/spandrel_support.py``):

* BasicSR ``RCAN`` (``SlimRCAN`` at full width, the RCAN students of CSD): spandrel's ``RCAN`` is the original
  EDSR-PyTorch layout (``head``, ``body``, ``tail``, ``sub_mean`` / ``add_mean`` 1x1 convolutions, inputs scaled by
  255 first); :func:`rcan_state_dict` renames the keys and writes BasicSR's ``(x - rgb_mean) * img_range`` and its
  inverse as those two convolutions. spandrel's residual blocks have no ``res_scale``.
* BasicSR ``SwinIR``: the keys of the original SwinIR, read as they are; spandrel guesses ``img_range`` (255 for
  window size 7, the JPEG models, else 1) and assumes ``qk_scale=None``, ``ape=False``, ``patch_norm=True``.
* BasicSR ``RRDBNet``: spandrel's ``ESRGAN`` converts BasicSR's keys itself; it assumes 32 growth channels.

Any other arch (EDSR, MSRResNet, PlainSR, RFDN, IMDN, CARN-M, CARN, ...) is refused by :func:`check_supported`
rather than written as a file that spandrel rejects or misreads.
"""
import inspect
import re
from basicsr.utils.registry import ARCH_REGISTRY
from dataclasses import dataclass
from torch import Tensor, nn
from typing import Callable, Dict, List

from kdplugins.utils.errors import ConfigurationError

SPANDREL_VERSION_READ = '0.4.2'  # the spandrel release whose architectures this module follows
StateDict = Dict[str, Tensor]


class SpandrelUnsupportedError(ConfigurationError, ValueError):
    """spandrel cannot load this network (unknown arch or options it would misread); the message names the
    formats to use instead."""


class MissingSpandrelError(ConfigurationError, ImportError):
    """spandrel is not installed; the message says how to install it."""


class SpandrelMismatchError(RuntimeError):
    """spandrel read an exported file as another arch or scale than the network's."""


def import_spandrel():
    """The ``spandrel`` package, or an error saying how to install it."""
    try:
        import spandrel
    except ImportError as error:
        raise MissingSpandrelError(f'--format spandrel loads the file back with spandrel: pip install spandrel '
                                   f"(or pip install 'kdplugins[export]'); {error}.") from error
    return spandrel


def effective_options(options: dict) -> dict:
    """``options`` completed with the defaults of the registered arch's constructors (every class of its MRO)."""
    values = {}
    for klass in reversed(ARCH_REGISTRY.get(options['type']).__mro__):
        init = klass.__dict__.get('__init__')
        if init is not None:
            for parameter in inspect.signature(init).parameters.values():
                if parameter.default is not inspect.Parameter.empty:
                    values[parameter.name] = parameter.default
    values.update(options)
    return values


def rename(state: StateDict, rules: List[tuple]) -> StateDict:
    """Every key renamed by the first ``(pattern, replacement)`` that matches it whole; a key that none matches is an
    error (a layout this module does not know)."""
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            if re.fullmatch(pattern, key):
                renamed[re.sub(pattern, replacement, key)] = value
                break
        else:
            raise ValueError(f'{key!r}: no spandrel key for this parameter')
    return renamed


def mean_shift(scale: float, bias: List[float], like: Tensor) -> Dict[str, Tensor]:
    """A 1x1 RGB convolution ``scale * x + bias`` (spandrel's ``MeanShift``)."""
    weight = like.new_zeros(3, 3, 1, 1)
    for channel in range(3):
        weight[channel, channel] = scale
    return {'weight': weight, 'bias': like.new_tensor(bias)}


def rcan_state_dict(state: StateDict, options: dict) -> StateDict:
    """BasicSR RCAN's keys as spandrel's (EDSR-PyTorch) RCAN.

    spandrel computes ``add_mean(tail(body(head(sub_mean(255 x))))) / 255``; BasicSR ``conv_last(...) / img_range +
    mean`` of ``(x - mean) * img_range``. With ``sub_mean = (img_range / 255) x' - img_range mean`` and ``add_mean =
    (255 / img_range) y + 255 mean`` both compute the same function.
    """
    blocks, groups = options['num_block'], options['num_group']
    rules = [
        (r'conv_first\.(\w+)', r'head.0.\1'),
        (r'body\.(\d+)\.residual_group\.(\d+)\.rcab\.([02])\.(\w+)', r'body.\1.body.\2.body.\3.\4'),
        (r'body\.(\d+)\.residual_group\.(\d+)\.rcab\.3\.attention\.1\.(\w+)', r'body.\1.body.\2.body.3.conv_du.0.\3'),
        (r'body\.(\d+)\.residual_group\.(\d+)\.rcab\.3\.attention\.3\.(\w+)', r'body.\1.body.\2.body.3.conv_du.2.\3'),
        (r'body\.(\d+)\.conv\.(\w+)', rf'body.\1.body.{blocks}.\2'),
        (r'conv_after_body\.(\w+)', rf'body.{groups}.\1'),
        (r'upsample\.(\d+)\.(\w+)', r'tail.0.\1.\2'),
        (r'conv_last\.(\w+)', r'tail.1.\1'),
    ]
    renamed = rename(state, rules)
    img_range, mean = float(options['img_range']), [float(m) for m in options['rgb_mean']]
    like = state['conv_first.weight']
    for prefix, shift in (('sub_mean', mean_shift(img_range / 255, [-img_range * m for m in mean],
                                                  like)), ('add_mean',
                                                           mean_shift(255 / img_range, [255 * m for m in mean], like))):
        renamed.update({f'{prefix}.{key}': value for key, value in shift.items()})
    return renamed


def same_keys(state: StateDict, options: dict) -> StateDict:
    """The state_dict as it is: spandrel reads BasicSR's keys of this arch."""
    return dict(state)


def rcan_problems(options: dict) -> List[str]:
    problems = []
    if not options['num_in_ch'] == options['num_out_ch'] == 3:
        problems.append('spandrel\'s RCAN is RGB in and out (num_in_ch = num_out_ch = 3)')
    if options['res_scale'] != 1:
        problems.append(f'spandrel\'s RCAN blocks have no res_scale (this network has {options["res_scale"]})')
    return problems


def swinir_problems(options: dict) -> List[str]:
    problems = []
    guessed_range = 255.0 if options['window_size'] == 7 else 1.0
    if float(options['img_range']) != guessed_range:
        problems.append(f'spandrel takes img_range {guessed_range:g} for window size {options["window_size"]} (this '
                        f'network has {options["img_range"]})')
    for name, assumed in (('qk_scale', None), ('ape', False), ('patch_norm', True), ('qkv_bias', True)):
        if options[name] != assumed:
            problems.append(f'spandrel assumes {name} = {assumed} (this network has {options[name]})')
    return problems


def rrdbnet_problems(options: dict) -> List[str]:
    problems = []
    if options['num_grow_ch'] != 32:
        problems.append(f'spandrel\'s ESRGAN has 32 growth channels (this network has {options["num_grow_ch"]})')
    if options['num_in_ch'] != options['num_out_ch']:
        problems.append('spandrel\'s ESRGAN needs num_in_ch = num_out_ch')
    return problems


@dataclass(frozen=True)
class Layout:
    """How one arch of ours becomes a file spandrel loads."""
    arch: str  # spandrel's architecture id
    convert: Callable[[StateDict, dict], StateDict]  # (state_dict, effective options) -> spandrel's state_dict
    problems: Callable[[dict], List[str]]  # options spandrel cannot express or would read differently
    keys: str  # the key layout written, in words (docs/deploy.md's table)


RCAN_KEYS = 'renamed to EDSR-PyTorch\'s head/body/tail, plus sub_mean/add_mean'
LAYOUTS = {
    'RCAN': Layout('RCAN', rcan_state_dict, rcan_problems, RCAN_KEYS),
    'SlimRCAN': Layout('RCAN', rcan_state_dict, rcan_problems, RCAN_KEYS),
    'SwinIR': Layout('SwinIR', same_keys, swinir_problems, 'BasicSR\'s, as they are'),
    'RRDBNet': Layout('ESRGAN', same_keys, rrdbnet_problems, 'BasicSR\'s, as they are (spandrel converts them)'),
}
INSTEAD = ('use --format onnx (chaiNNer opens ONNX files), torchscript or safetensors instead')


def layout_of(options: dict) -> Layout:
    """The layout of ``options['type']``, or an error naming the archs spandrel knows and the formats to use."""
    kind = options['type']
    if kind not in LAYOUTS:
        raise SpandrelUnsupportedError(
            f'--format spandrel: spandrel ({SPANDREL_VERSION_READ}) has no architecture for {kind}; kdplugins writes '
            f'spandrel files of {", ".join(sorted(LAYOUTS))} (docs/deploy.md, "spandrel"). A file of {kind} would not '
            f'load in spandrel, chaiNNer or ComfyUI: {INSTEAD}.')
    return LAYOUTS[kind]


def check_supported(options: dict) -> Layout:
    """The layout of ``options``, or an error when spandrel does not know the arch or would misread these options."""
    layout = layout_of(options)
    problems = layout.problems(effective_options(options))
    if problems:
        raise SpandrelUnsupportedError(f'--format spandrel: spandrel would read this {options["type"]} differently: '
                                       f'{"; ".join(problems)}; {INSTEAD}.')
    return layout


def spandrel_state_dict(state: StateDict, options: dict) -> StateDict:
    """``state`` (the network's ``state_dict``) in the key layout that spandrel detects as the arch of ``options``."""
    return check_supported(options).convert(state, effective_options(options))


def load_checked(path: str, arch: str, scale: int) -> nn.Module:
    """The network spandrel's ``ModelLoader`` builds from ``path`` (eval mode, CPU), after checking that spandrel read
    it as ``arch`` at ``scale``."""
    import_spandrel()
    from spandrel import ModelLoader
    descriptor = ModelLoader().load_from_file(path)
    if descriptor.architecture.id != arch or descriptor.scale != scale:
        raise SpandrelMismatchError(f'spandrel read {path} as {descriptor.architecture.id} x{descriptor.scale}, not '
                                    f'{arch} x{scale}')
    return descriptor.model.eval()
