"""Keep freed host memory in the process instead of returning it to the OS after every training step.

glibc serves every allocation above 32 MiB (feature maps of a batch of SR patches, their gradients) with a fresh
``mmap`` and gives it back with ``munmap`` when the tensor is freed, so every training step faults in and zeroes all
of its large tensors again: millions of page faults per minute on a CPU run (docs/augkd.md). Serving them from the
heap and not trimming it makes later steps reuse the same pages, as PyTorch's caching allocator does on a GPU. The
cost: the process keeps its peak host memory until it ends.
"""
import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
DISABLE_VARIABLE = 'KDPLUGINS_RELEASE_HOST_MEMORY'


def keep_freed_host_memory() -> bool:
    """Ask glibc not to ``mmap`` large blocks nor trim the heap; returns whether it took effect.

    Does nothing outside glibc, or when the environment variable ``KDPLUGINS_RELEASE_HOST_MEMORY=1`` is set.
    """
    if os.environ.get(DISABLE_VARIABLE) == '1':
        return False
    name = ctypes.util.find_library('c')
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # no mmap for large blocks; a trim threshold of -1 disables trimming (mallopt(3))
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))
