"""The network to deploy: built from an option file and loaded strictly from a checkpoint.

The option file is either a BasicSR option file (its ``network_g``, or the section given; its ``custom_imports`` are
imported first) or a file of bare network options, ``type`` and arguments at the top level, as
``scripts/extract_csd_student.py`` writes next to an extracted CSD student.
"""
import inspect
import os
import yaml
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY
from dataclasses import dataclass, field
from torch import nn
from typing import Iterable, List, Tuple

from kdplugins.distill.conv_lora import add_conv_lora_from_state, merge_conv_lora
from kdplugins.runtime.custom_imports import import_from_options, import_modules
from kdplugins.runtime.option_checks import unknown_type_message
from kdplugins.utils.checkpoint import load_state_dict_checked, read_state_dict
from kdplugins.utils.errors import ConfigurationError

# constructor arguments that give the number of input channels, by arch family (BasicSR, kdplugins, SwinIR, ESRGAN)
IN_CHANNEL_ARGUMENTS = ('num_in_ch', 'in_channels', 'in_chans', 'in_nc')


class NetworkFileError(ConfigurationError, ValueError):
    """The option file does not describe a network; the message says what it holds and how to fix it."""


@dataclass
class DeployedNetwork:
    """A network ready for inference (eval mode, on the CPU) and where it came from."""
    net: nn.Module
    options: dict  # the ``build_network`` options: type and arguments
    name: str  # the option file's ``name``, or the stem of a bare network-options file
    in_channels: int  # image channels the network reads (1: grey, 3: RGB)
    imports: List[str] = field(default_factory=list)  # --import modules and the file's custom_imports, in order


def read_options_file(path: str) -> dict:
    """The YAML mapping of ``path``; errors name the file and what is wrong with it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'-opt: option file not found: {path!r}. Give a BasicSR option file (with network_g) '
                                'or the .yml of network options that scripts/extract_csd_student.py writes.')
    with open(path) as f:
        opt = yaml.safe_load(f)
    if not isinstance(opt, dict):
        raise NetworkFileError(f'{path}: not a YAML mapping of options (it holds a {type(opt).__name__}).')
    return opt


def network_options(opt: dict, path: str, section: str = 'network_g') -> Tuple[dict, str]:
    """(``build_network`` options, name) from the parsed option file ``opt`` read from ``path``."""
    if isinstance(opt.get(section), dict) and 'type' in opt[section]:
        return dict(opt[section]), str(opt.get('name') or opt[section]['type'])
    if 'type' in opt and not any(isinstance(v, dict) and 'type' in v for v in opt.values()):
        return dict(opt), os.path.splitext(os.path.basename(path))[0]
    sections = sorted(k for k, v in opt.items() if isinstance(v, dict) and 'type' in v)
    raise NetworkFileError(f'{path}: no network section {section!r} (sections with a type: {sections}) and no '
                           'top-level type. Give --network SECTION, or a file of network options (type: EDSR, ...).')


def in_channels_of(net: nn.Module, options: dict) -> int:
    """Input channels: the option that names them, else the constructor's default for it, else 3."""
    parameters = inspect.signature(type(net).__init__).parameters
    for name in IN_CHANNEL_ARGUMENTS:
        if name in options:
            return int(options[name])
        if name in parameters and isinstance(parameters[name].default, int):
            return parameters[name].default
    return 3


def load_network(opt_path: str,
                 checkpoint: str,
                 section: str = 'network_g',
                 param_key: str = 'params',
                 imports: Iterable[str] = ()) -> DeployedNetwork:
    """Build ``section`` of ``opt_path`` and load ``checkpoint`` into it with every key and shape checked.

    ``imports`` (``--import``) and the file's ``custom_imports`` are imported first, so that the types of a project
    of one's own can be named. ``param_key``: ``params`` or ``params_ema`` (falls back to ``params`` when absent).
    A checkpoint with ConvLoRA branches (``train.lora``) is loaded with them and merged: the network returned is the
    base network with the merged weights (:func:`~kdplugins.distill.conv_lora.merge_conv_lora`).
    """
    modules = import_modules(imports, '--import')
    opt = read_options_file(opt_path)
    modules += [name for name in import_from_options(opt) if name not in modules]
    options, name = network_options(opt, opt_path, section)
    if options['type'] not in ARCH_REGISTRY:
        raise NetworkFileError(unknown_type_message(ARCH_REGISTRY, options['type'], f'{opt_path}: {section}'))
    net = build_network(dict(options))
    state = read_state_dict(checkpoint, param_key, 'module.', '--checkpoint')
    if hasattr(net, 'convert_state_dict'):  # an arch that takes other layouts (SPAN: a training-form checkpoint)
        state = net.convert_state_dict(state)
    add_conv_lora_from_state(net, state)
    load_state_dict_checked(
        net,
        state,
        what=f'{options["type"]} of {os.path.basename(opt_path)}',
        fix='Give the checkpoint written for these network options (net_g_<iter>.pth of the same run, or the .pth '
        'that scripts/extract_csd_student.py wrote beside this .yml); --param-key params_ema for EMA weights.')
    return DeployedNetwork(merge_conv_lora(net).eval(), options, name, in_channels_of(net, options), modules)
