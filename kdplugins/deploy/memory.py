"""Peak memory of a run, as the inference command prints it.

* CUDA: ``torch.cuda.max_memory_allocated()`` since :func:`reset_peak` (tensors of PyTorch's caching allocator:
  weights, images, activations; not the CUDA context nor cached free blocks).
* CPU: the peak resident set size of the process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``): everything the
  process touched since it started (Python, the torch libraries, the network, the images and every buffer), not
  tensors only; Linux reports it in KiB, macOS in bytes.

The resident-set-size readers of the benchmark live in :mod:`.probe`, which imports nothing but the standard library.
"""
import torch
from typing import Tuple

from kdplugins.deploy.probe import max_rss_bytes

MIB = 2**20


def reset_peak(device: torch.device) -> None:
    """Start a new peak on CUDA (the CPU figure is the process's peak, which cannot be reset portably)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> Tuple[int, str]:
    """(bytes, what was measured) for the run on ``device`` (see the module docstring)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device), 'CUDA torch.cuda.max_memory_allocated() during the run'
    return max_rss_bytes(), ('CPU peak resident set size of the process (resource.getrusage ru_maxrss: Python, torch, '
                             'the network and the images included)')
