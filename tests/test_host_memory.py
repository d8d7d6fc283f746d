"""kdplugins.runtime.host_memory: freed large tensors are reused instead of being faulted in again."""
import os
import subprocess
import sys

COUNT_FAULTS = '''
import resource, sys, torch
from kdplugins.runtime.host_memory import keep_freed_host_memory
assert keep_freed_host_memory() == (sys.argv[1] == 'keep')
warm = torch.ones(2**24)  # 64 MiB, once, so that the heap has grown
del warm
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(2**24)  # allocated, written and freed
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
