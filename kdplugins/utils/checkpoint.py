"""Loading of network weights with errors that say what does not match and how to fix it."""
import os
import torch
from torch import nn
from typing import Dict, Optional, Tuple

from kdplugins.utils.errors import ConfigurationError
from kdplugins.utils.model_zoo import zoo_hint


class CheckpointMismatchError(ConfigurationError, ValueError):
    """A checkpoint does not fit its network (strictly), or fills too few of its tensors (non-strict load)."""


class CheckpointReadError(ConfigurationError, ValueError):
    """A checkpoint file cannot be read as network weights (a training state, a truncated file)."""


def matched_tensors(own: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor]) -> Tuple[int, int]:
    """(how many of the network's tensors ``state`` fills with its key and shape, how many it has)."""
    return sum(1 for k, v in own.items() if k in state and state[k].shape == v.shape), len(own)


def matched_share_problem(own: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor], min_share: float, what: str,
                          source: str, fix: str) -> Optional[str]:
    """A message when a non-strict load fills less than ``min_share`` of the network's tensors, else None."""
    matched, total = matched_tensors(own, state)
    if total and matched / total < min_share:
        return (f'{source} fills {matched} of the {total} tensors of the {what} (a non-strict load; at least '
                f'{min_share:.0%} required, train.min_matched_weights): it would train from mostly random weights. '
                f'{fix}')
    return None


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
                                'file (relative paths are resolved from the current directory).' + zoo_hint(path))
    try:
        loaded = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # noqa: B902  (torch raises RuntimeError, UnpicklingError, EOFError, ...)
        what = (' It is a training state (<iter>.state: optimizers, schedulers, random states), not network weights: '
                'use the network file of that iteration, models/net_<x>_<iter>.pth.' if path.endswith('.state') else
                ' A training state (<iter>.state) holds no network weights; a truncated or corrupt file must be '
                'restored or made again.')
        first_line = (str(error).strip().splitlines() or [''])[0][:200]
        raise CheckpointReadError(f'{option}: {path} cannot be read as network weights ({type(error).__name__}: '
                                  f'{first_line}).{what}') from None
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
                            fix: str = '',
                            min_share: float = 0.0) -> None:
    """``net.load_state_dict(state)`` that, when strict, lists every missing, unexpected and mis-shaped key, and when
    not, stops when ``state`` fills less than ``min_share`` of the network's tensors."""
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
        raise CheckpointMismatchError('\n'.join(lines))
    problem = None if strict else matched_share_problem(own, state, min_share, what, 'The checkpoint', fix)
    if problem:
        raise CheckpointMismatchError(problem)
    net.load_state_dict({k: v for k, v in state.items() if k in own and v.shape == own[k].shape}, strict=False)
