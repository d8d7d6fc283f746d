"""Per-rank pieces of the training state that basicsr does not save: random generator states and digests."""
import contextlib
import hashlib
import numpy as np
import random
import torch
import torch.distributed as dist
from torch import nn
from typing import Any, Dict, Iterable, Iterator, List


def capture_rng_state(generator: torch.Generator) -> Dict[str, Any]:
    """States of Python's, NumPy's and torch's global generators and of the model's own ``generator``."""
    state = {
        'python': random.getstate(),
        'numpy': np.random.get_state(),
        'torch': torch.get_rng_state(),
        'model': generator.get_state()
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


@contextlib.contextmanager
def kept_rng_state() -> Iterator[None]:
    """Python's, NumPy's and torch's CPU generators as they were before the block."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def restore_rng_state(state: Dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    generator.set_state(state['model'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def gather_from_ranks(obj: Any) -> List[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (a one-element list without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    gathered: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def tensors_digest(modules: Iterable[nn.Module]) -> str:
    """SHA-256 of the bytes of every parameter and buffer, in ``state_dict`` order: equal digests mean bitwise
    equal weights."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def broadcast_from_rank0(module: nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (what DDP does for the network it wraps)."""
    if dist.is_available() and dist.is_initialized():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)
