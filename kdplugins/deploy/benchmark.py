"""A network in PyTorch and its ONNX export in onnxruntime, measured the same way on the CPU (AIM 2020 input size).

For each network: its weights (a checkpoint, or random ones: runtime and memory do not depend on the values) and
options are written to ``<out>/<name>.pth`` and ``.yml``, the ONNX file to ``<out>/<name>.onnx`` (checked against
PyTorch on a crop of scikit-image's astronaut photo), then each backend is measured in a fresh process by
:mod:`.probe`: median runtime of ``repeat`` inferences after ``warmup``, and the peak resident set size during the
first inference (and its increase over the loaded process). The onnxruntime process imports neither torch nor
kdplugins, as a deployment would not. PyTorch's row also gives the tensor peak of
:func:`kdplugins.utils.efficiency.peak_memory` (torch.profiler), the figure of docs/efficiency.md's tables.
"""
import json
import os
import subprocess
import sys
import torch
import yaml
from basicsr.archs import build_network
from dataclasses import dataclass, field
from torch import nn
from typing import Dict, List, Optional

from kdplugins.deploy import formats, images, probe
from kdplugins.utils import efficiency

MIB = 2**20


@dataclass
class BenchmarkNetwork:
    """One network to measure: a label, its ``build_network`` options, weights, and modules to import first."""
    label: str
    name: str
    options: dict
    net: nn.Module
    imports: List[str] = field(default_factory=list)
    weights: str = 'random (seed 0)'


def random_network(label: str, name: str, options: dict, imports: Optional[List[str]] = None) -> BenchmarkNetwork:
    """``options`` built with random weights (``torch.manual_seed(0)``)."""
    torch.manual_seed(0)
    return BenchmarkNetwork(label, name, dict(options), build_network(dict(options)).eval(), list(imports or []))


def prepare(network: BenchmarkNetwork, folder: str, input_size: int) -> Dict[str, object]:
    """Write ``.pth``, ``.yml`` and ``.onnx`` of ``network`` to ``folder``; the files and the ONNX check."""
    os.makedirs(folder, exist_ok=True)
    stem = os.path.join(folder, network.name)
    torch.save({'params': network.net.state_dict()}, stem + '.pth')
    with open(stem + '.yml', 'w') as f:
        record = {'name': network.name, 'custom_imports': network.imports, 'network_g': network.options}
        yaml.safe_dump(record, f, sort_keys=False)
    onnx_path = formats.export('onnx', network.net, torch.rand(1, 3, 32, 32), folder, network.name)
    photo = images.read_image(images.scikit_image_photos(['astronaut.png'])[0])
    size = min(input_size, photo.pixels.shape[0])
    x = images.to_network_input(images.Image(images.center_crop(photo.pixels, size, size), 8), 3)
    with torch.no_grad():
        expected = network.net(x).numpy()
    difference = float(abs(formats.onnx_runner(onnx_path)(x.numpy()) - expected).max())
    return {
        'options_file': stem + '.yml',
        'checkpoint': stem + '.pth',
        'onnx_file': onnx_path,
        'max_abs_difference': difference,
        'checked_on': f'astronaut.png {size}x{size}'
    }


def run_probe(backend: str, spec: Dict[str, object]) -> Dict[str, object]:
    """:mod:`.probe` in a new process for ``backend`` (``torch`` or ``onnxruntime``); its JSON result."""
    argument = json.dumps(dict(spec, backend=backend))
    if backend == 'torch':
        command = [sys.executable, '-m', 'kdplugins.deploy.probe', argument]
    else:
        command = [sys.executable, '-I', os.path.abspath(probe.__file__), argument]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f'the {backend} measurement failed (exit status {done.returncode}):\n{done.stderr[-3000:]}')
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(network: BenchmarkNetwork, folder: str, input_size: int, repeat: int, warmup: int,
            threads: int) -> Dict[str, object]:
    """Files, op counts and both backends' measurements of ``network``."""
    files = prepare(network, folder, input_size)
    shape = [1, 3, input_size, input_size]
    spec = dict(files, imports=network.imports, shape=shape, repeat=repeat, warmup=warmup, threads=threads)
    counts = efficiency.count_ops(network.net, shape)
    return {
        'label': network.label,
        'network_g': network.options,
        'weights': network.weights,
        'params': counts.params,
        'flops': counts.flops,
        'input_shape': shape,
        'files': files,
        'backends': [run_probe('torch', spec), run_probe('onnxruntime', spec)],
    }


def rss_increase(result: Dict[str, object]) -> Optional[int]:
    """Bytes the first inference added to the loaded process (None without /proc or its peak reset)."""
    if result['rss_before_bytes'] is None or not result['rss_peak_is_since_reset']:
        return None
    return result['rss_peak_first_inference_bytes'] - result['rss_before_bytes']


def markdown_table(records: List[Dict[str, object]]) -> str:
    """One row per network and backend, with the onnxruntime / PyTorch ratios and the protocol above."""
    first = records[0]
    threads = first['backends'][0]['threads']
    lines = [
        f'Input: one LR image of {"x".join(map(str, first["input_shape"][1:]))} (uniform noise); CPU: '
        f'{efficiency.cpu_model()}, {threads} intra-op threads in both backends; each backend in a fresh process.',
        f'Runtime: median of {len(first["backends"][0]["runtimes_s"])} inferences after the first and '
        'the warm-up ones. Peak RSS: resident set size high-water mark of the process during its first inference '
        '(loaded model, input and runtime libraries included; onnxruntime without torch); increase: over the RSS '
        'just before it. Tensor peak: PyTorch CPU allocator peak (kdplugins.utils.efficiency.peak_memory).', '',
        '| Network | Backend | Runtime [ms] | Peak RSS [MiB] | RSS increase [MiB] | Tensor peak [MiB] '
        '| ONNX max abs diff |', '|---|---|---:|---:|---:|---:|---:|'
    ]
    for record in records:
        for result in record['backends']:
            tensor, increase = result['tensor_peak_bytes'], rss_increase(result)
            lines.append(
                f'| {record["label"]} | {result["version"]} | {result["runtime_median_s"] * 1e3:.1f} '
                f'| {result["rss_peak_first_inference_bytes"] / MIB:.1f} '
                f'| {"-" if increase is None else f"{increase / MIB:.1f}"} '
                f'| {"-" if tensor is None else f"{tensor / MIB:.1f}"} '
                f'| {"" if result["backend"] == "torch" else format(record["files"]["max_abs_difference"], ".2g")} |')
    lines.append('')
    for record in records:
        torch_result, ort_result = record['backends']
        runtime = ort_result['runtime_median_s'] / torch_result['runtime_median_s']
        peak = ort_result['rss_peak_first_inference_bytes'] / torch_result['rss_peak_first_inference_bytes']
        lines.append(f'{record["label"]}: {record["params"]:,} parameters, {record["flops"] / 1e9:.2f} G FLOPs; '
                     f'onnxruntime / PyTorch: runtime {runtime:.2f}, peak RSS {peak:.2f}' +
                     (f', RSS increase {rss_increase(ort_result) / rss_increase(torch_result):.2f}.'
                      if rss_increase(ort_result) and rss_increase(torch_result) else '.'))
    return '\n'.join(lines) + '\n'
