"""kdplugins.runtime.host_memory: freed large tensors are reused instead of being faulted in again."""
import os
import subprocess
import sys

COUNT_FAULTS = '''
import ctypes, resource, sys
from kdplugins.runtime.host_memory import keep_freed_host_memory
assert keep_freed_host_memory() == (sys.argv[1] == 'keep')
libc = ctypes.CDLL(None)  # the glibc allocator PyTorch's CPU tensors come from (malloc / posix_memalign and free)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
size = 2**26  # 64 MiB, the size of a batch of feature maps
libc.free(libc.malloc(size))  # once, so that the heap has grown
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    block = libc.malloc(size)  # allocated, written and freed
    ctypes.memset(block, 1, size)
    libc.free(block)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
'''


def page_faults(mode: str) -> int:
    env_mode = {'keep': {}, 'release': {'KDPLUGINS_RELEASE_HOST_MEMORY': '1'}}[mode]
    result = subprocess.run([sys.executable, '-c', COUNT_FAULTS, mode],
                            capture_output=True,
                            text=True,
                            check=True,
                            env=dict(os.environ, **env_mode))
    return int(result.stdout.split()[-1])


def test_large_tensors_reuse_pages_unless_released():
    pages_of_one_tensor = 2**26 // 4096
    assert page_faults('release') >= 5 * pages_of_one_tensor  # glibc's default: mmap and munmap every time
    assert page_faults('keep') <= pages_of_one_tensor + 100  # at most the heap growing once more
