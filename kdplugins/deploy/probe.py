"""One backend measured in a process of its own: ``python -m kdplugins.deploy.probe '<json>'`` (PyTorch) or
``python -I path/to/probe.py '<json>'`` (onnxruntime: run by path, so that neither kdplugins nor torch is imported and
the process holds what an onnxruntime deployment holds). Prints one JSON line; :mod:`.benchmark` starts it.

In the fresh process: load the network (PyTorch: ``build_network`` and the checkpoint; onnxruntime: an
``InferenceSession`` on the CPU), make the input (uniform noise, seed 0), read the resident set size, reset the
kernel's RSS high-water mark (Linux: ``5`` into /proc/self/clear_refs), run the first inference and read the mark
again: the peak RSS of the process during its first inference, and its increase over the loaded state. Then
``warmup`` untimed and ``repeat`` timed inferences (median reported), on ``threads`` intra-op threads.

This module imports only the standard library at the top (numpy and the backend inside the functions), so that
:mod:`.memory` can share its RSS readers.
"""
import json
import resource
import statistics
import sys
import time
from typing import Callable, Dict, Optional, Tuple


def _status_field(name: str) -> Optional[int]:
    """A ``kB`` field of /proc/self/status in bytes (Linux), None elsewhere."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(name + ':'):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def max_rss_bytes() -> int:
    """``resource.getrusage(RUSAGE_SELF).ru_maxrss`` in bytes (KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == 'darwin' else peak * 1024


def current_rss_bytes() -> Optional[int]:
    """Resident set size now (Linux ``VmRSS``), None where /proc is missing."""
    return _status_field('VmRSS')


def reset_rss_peak() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux 4.0+); False where impossible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def rss_peak_bytes() -> int:
    """RSS high-water mark (Linux ``VmHWM``, since the last :func:`reset_rss_peak`), else ``ru_maxrss``."""
    hwm = _status_field('VmHWM')
    return hwm if hwm is not None else max_rss_bytes()


def _torch_backend(spec: Dict) -> Tuple[Callable[[], object], Callable[[], Optional[int]], str]:
    """(one inference, the tensor peak of efficiency.peak_memory, version) of the PyTorch network."""
    import torch

    from kdplugins.deploy.network import load_network
    from kdplugins.utils.efficiency import peak_memory
    torch.set_num_threads(spec['threads'])
    net = load_network(spec['options_file'], spec['checkpoint'], imports=spec.get('imports', [])).net
    x = torch.rand(spec['shape'], generator=torch.Generator().manual_seed(0))

    def forward():
        with torch.no_grad():
            return net(x)

    return forward, lambda: peak_memory(net, x)[0], f'torch {torch.__version__}'


def _onnxruntime_backend(spec: Dict) -> Tuple[Callable[[], object], Callable[[], Optional[int]], str]:
    """(one inference, no tensor peak, version) of the ONNX file in an onnxruntime CPU session."""
    import numpy as np
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = spec['threads']
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(spec['onnx_file'], options, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).random(spec['shape'], dtype=np.float32)
    return lambda: session.run(None, {name: x}), lambda: None, f'onnxruntime {onnxruntime.__version__}'


def measure(spec: Dict) -> Dict:
    """The measurements of one backend (``spec['backend']``: ``torch`` or ``onnxruntime``) in this process."""
    forward, tensor_peak, version = (_torch_backend if spec['backend'] == 'torch' else _onnxruntime_backend)(spec)
    before = current_rss_bytes()
    exact = reset_rss_peak()
    forward()
    peak = rss_peak_bytes()
    for _ in range(spec['warmup']):
        forward()
    times = []
    for _ in range(spec['repeat']):
        start = time.perf_counter()
        forward()
        times.append(time.perf_counter() - start)
    return {
        'backend': spec['backend'],
        'version': version,
        'threads': spec['threads'],
        'runtimes_s': times,
        'runtime_median_s': statistics.median(times),
        'rss_before_bytes': before,
        'rss_peak_first_inference_bytes': peak,
        'rss_peak_is_since_reset': exact,
        'tensor_peak_bytes': tensor_peak(),
        'torch_imported': 'torch' in sys.modules,
    }


if __name__ == '__main__':
    print(json.dumps(measure(json.loads(sys.argv[1]))))
