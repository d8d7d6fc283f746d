"""Loading of network weights with errors that say what does not match and how to fix it."""
import os
import torch
from torch import nn
from typing import Dict, Optional


def read_state_dict(path: str,
                    param_key: Optional[str] = 'params',
                    strip_prefix: Optional[str] = 'module.',
                    option: str = 'path.pretrain_network') -> Dict[str, torch.Tensor]:
    """Read a flat state_dict from a checkpoint file.

    Args:
        path: checkpoint file (a flat state_dict or a dict holding one under ``param_key``, as BasicSR saves).
        param_key: key of the state_dict inside the file; ignored when the file is already flat. When the key is
            absent but ``params`` exists (``params_ema`` asked of a file saved without EMA), ``params`` is used.
        strip_prefix: removed from every key that starts with it (``module.`` of DataParallel checkpoints).
        option: name of the YAML option that gave ``path``, used in error messages.
    """
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(f'{option}: checkpoint file not found: {path!r}. Set {option} to an existing .pth '
                                'file (relative paths are resolved from the current directory).')
    loaded = torch.load(path, map_location='cpu', weights_only=True)
    state = _select_param_key(loaded, param_key, path)
    if strip_prefix:
        state = {(k[len(strip_prefix):] if k.startswith(strip_prefix) else k): v for k, v in state.items()}
    return state


def _select_param_key(loaded: dict, param_key: Optional[str], path: str) -> Dict[str, torch.Tensor]:
    if all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return dict(loaded)
    if param_key in loaded:
        return dict(loaded[param_key])
    if param_key == 'params_ema' and 'params' in loaded:
        return dict(loaded['params'])
    raise KeyError(f'{path}: no state_dict under param key {param_key!r}; the file has keys {sorted(loaded)}. '
                   'Set the param_key option to one of them.')


def load_state_dict_checked(net: nn.Module,
                            state: Dict[str, torch.Tensor],
                            strict: bool = True,
                            what: str = 'network',
                            fix: str = '') -> None:
    """``net.load_state_dict(state)`` that, when strict, lists every missing, unexpected and mis-shaped key."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = sorted(f'{k}: checkpoint {tuple(state[k].shape)} vs {what} {tuple(own[k].shape)}'
                       for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if strict and (missing or unexpected or misshaped):
        lines = [f'The checkpoint does not match the {what} ({net.__class__.__name__}).']
        for title, keys in (('missing keys', missing), ('unexpected keys', unexpected), ('shape mismatch', misshaped)):
            if keys:
                lines.append(f'  {title} ({len(keys)}): ' + ', '.join(keys[:20]) + (' ...' if len(keys) > 20 else ''))
        lines.append(fix or 'Check the network options (type, widths, scale) against the checkpoint.')
        raise ValueError('\n'.join(lines))
    net.load_state_dict({k: v for k, v in state.items() if k in own and v.shape == own[k].shape}, strict=False)
