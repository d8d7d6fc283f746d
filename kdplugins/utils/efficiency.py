"""Efficiency metrics of the AIM 2020 efficient SR challenge, measured with forward hooks.

Protocol: K. Zhang, M. Danelljan, Y. Li, R. Timofte et al., "AIM 2020 Challenge on Efficient Super-Resolution:
Methods and Results", ECCV Workshops 2020 (Sec. 2.2 "MSRResNet Baseline Model", Sec. 2.3 "Evaluation protocol",
Table 1). Parameters, FLOPs, activations, number of convolutions and maximum memory are taken on one LR input of
3x256x256; the runtime is the challenge's most important metric. The report defines:

* ``#Params``: the total number of parameters.
* ``FLOPs``: the challenge's reference counter (KAIR's ``utils_modelsummary.py``, used by the report's linked
  ``main_challenge_sr.py``) adds, per executed module, the multiply-accumulates (MACs, not 2 x MACs) of every
  convolution and linear layer, bias not included, plus one operation per output element of every activation
  *module* (``nn.ReLU``, ``nn.LeakyReLU``, ``nn.PReLU``, ``nn.ELU``, ``nn.ReLU6``) and one (two when affine) per
  output element of ``nn.BatchNorm2d``.
  Functional calls (``F.relu``, ``F.leaky_relu``, ``F.interpolate``, ``F.max_pool2d``, ``torch.sigmoid``,
  additions, products, attention matmuls) and modules outside that list (``nn.PixelShuffle``, ``nn.Sigmoid``,
  ``nn.GELU``) are not counted. Applied to the reference implementations this gives the published figures to the
  last digit: MSRResNet 166.36 G = 166.2077 G conv MACs + 155.19 M ``nn.LeakyReLU`` outputs (its residual blocks
  call ``F.relu``); RFDN 27.10 G = 27.0336 G conv MACs + 68.97 M outputs of its ``nn.LeakyReLU``/``nn.ReLU``
  modules. Counting the bias instead would give 166.50 G and 27.15 G. The elementwise part depends on how an
  arch is written, ``OpCounts.macs`` does not: BasicSR's MSRResNet has an ``nn.ReLU`` module in each residual
  block (166.43 G), and an arch calling ``F.leaky_relu`` where the reference has ``nn.LeakyReLU`` modules (as
  kdplugins' RFDN and IMDN blocks do) is charged less (RFDN: 27.04 G).
* ``#Activations``: "the number of elements of all outputs of convolutional layers".
* ``#Conv``: the number of convolutional layers, counted per execution (a module called twice counts twice).
* ``Memory``: ``torch.cuda.max_memory_allocated()`` during inference. Without CUDA, :func:`peak_memory` gives a
  CPU measurement of the same kind (see there), which is not comparable with GPU figures.

A convolution with output ``y`` costs ``y.numel() * in_channels / groups * prod(kernel_size)`` MACs; a transposed
convolution with input ``x`` costs ``x.numel() * out_channels / groups * prod(kernel_size)`` MACs (each input element
meets every kernel tap of its group's output channels; the reference counter applies the convolution formula to
transposed convolutions too, which overcounts them by stride^2). A linear layer costs ``y.numel() * in_features``.
"""
import contextlib
import copy
import math
import os
import platform
import statistics
import sys
import time
import torch
import yaml
from dataclasses import asdict, dataclass
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.hooks import RemovableHandle
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
TRANSPOSED_CONVS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
ACTIVATION_MODULES = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.ReLU6)
MIB = 2**20


@dataclass
class OpCounts:
    """What the AIM 2020 protocol counts for one forward pass; ``flops = macs + elementwise_ops``."""
    params: int = 0
    macs: int = 0
    elementwise_ops: int = 0
    activations: int = 0
    convs: int = 0

    @property
    def flops(self) -> int:
        """FLOPs as published by AIM 2020: conv/linear MACs plus activation-module and BatchNorm outputs."""
        return self.macs + self.elementwise_ops


@dataclass
class EfficiencyReport:
    """All metrics of one network; memory in bytes, runtimes in seconds."""
    name: str
    network_options: dict
    input_shape: List[int]
    counts: OpCounts
    peak_memory_bytes: int
    memory_method: str
    device: str
    warmup: int
    runtimes_s: List[float]

    @property
    def runtime_median_s(self) -> float:
        """Median of the timed forward passes."""
        return statistics.median(self.runtimes_s)

    def to_dict(self) -> dict:
        """JSON-ready record, exact integers for the counts."""
        record = asdict(self)
        record['counts']['flops'] = self.counts.flops
        record['runtime_median_s'] = self.runtime_median_s
        return record


def count_parameters(net: nn.Module) -> int:
    """``#Params``: the total number of (distinct) parameters, trainable or not."""
    return sum(p.numel() for p in net.parameters())


def conv_macs(module: nn.Module, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """Multiply-accumulates of one call of a (transposed) convolution, bias excluded."""
    taps = math.prod(module.kernel_size)
    if isinstance(module, TRANSPOSED_CONVS):
        return inputs[0].numel() * (module.out_channels // module.groups) * taps
    return output.numel() * (module.in_channels // module.groups) * taps


def elementwise_ops(module: nn.Module, output: torch.Tensor) -> int:
    """Operations the reference counter charges to activation modules (1 per output) and BatchNorm2d (1 or 2)."""
    if isinstance(module, ACTIVATION_MODULES):
        return output.numel()
    if isinstance(module, nn.BatchNorm2d):
        return output.numel() * (2 if module.affine else 1)
    return 0


def _count_hook(counts: OpCounts) -> Callable[[nn.Module, tuple, torch.Tensor], None]:

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, CONVS + TRANSPOSED_CONVS):
            counts.macs += conv_macs(module, inputs, output)
            counts.activations += output.numel()
            counts.convs += 1
        elif isinstance(module, nn.Linear):
            counts.macs += output.numel() * module.in_features
        else:
            counts.elementwise_ops += elementwise_ops(module, output)

    return hook


def counted_forward(net: nn.Module, x: torch.Tensor) -> OpCounts:
    """Counts of one forward of ``net`` on ``x`` (any device, meta included), taken by forward hooks."""
    counts = OpCounts(params=count_parameters(net))
    counted = CONVS + TRANSPOSED_CONVS + ACTIVATION_MODULES + (nn.Linear, nn.BatchNorm2d)
    handles: List[RemovableHandle] = [
        m.register_forward_hook(_count_hook(counts)) for m in net.modules() if isinstance(m, counted)
    ]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for handle in handles:
            handle.remove()
    return counts


def count_ops(net: nn.Module, input_shape: Iterable[int]) -> OpCounts:
    """Params, FLOPs, MACs, activations and #conv of ``net`` for one input of ``input_shape`` (e.g. 1x3x256x256).

    The forward runs on a copy of ``net`` on the meta device (shapes only, no arithmetic: exact counts in well under
    a second). Networks whose forward cannot run there (data-dependent control flow, tensors kept outside
    parameters and buffers) are counted by a real forward on their own device.
    """
    shape = tuple(input_shape)
    try:
        return counted_forward(copy.deepcopy(net).to('meta'), torch.empty(shape, device='meta'))
    except (NotImplementedError, RuntimeError):
        device = next(net.parameters(), torch.empty(0)).device
        return counted_forward(net, torch.rand(shape, device=device))


def held_tensor_bytes(net: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the parameters, buffers and input: what is resident before the forward starts."""
    tensors = list(net.parameters()) + list(net.buffers()) + [x]
    return sum(t.numel() * t.element_size() for t in tensors)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null: the profiler's C++ library (kineto) prints its stages and, without CUDA, a
    failed GPU probe ('ERROR ... gpuGetDeviceCount failed') that look like failures and are none. Python exceptions
    are not affected (they are printed, if at all, after the block)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'w') as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_peak_memory(net: nn.Module, x: torch.Tensor) -> int:
    with _native_stderr_silenced(), torch.no_grad(), profile(
            activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        net(x)
    # The raw allocator records: prof.events() nets them per op, which hides the transient peak inside an op.
    records = [e for e in prof.profiler.kineto_results.events() if e.name() == '[memory]']
    running = peak = 0
    # torch 2.3's kineto events have start_us() only (microseconds; the sort is stable for equal times)
    for record in sorted(records, key=lambda e: e.start_ns() if hasattr(e, 'start_ns') else e.start_us() * 1000):
        running += record.nbytes()
        peak = max(peak, running)
    return held_tensor_bytes(net, x) + peak


def _cuda_peak_memory(net: nn.Module, x: torch.Tensor) -> int:
    torch.cuda.synchronize(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    with torch.no_grad():
        net(x)
    torch.cuda.synchronize(x.device)
    return torch.cuda.max_memory_allocated(x.device)


CUDA_MEMORY_METHOD = 'CUDA torch.cuda.max_memory_allocated() during one forward (weights and input included)'
CPU_MEMORY_METHOD = ('CPU peak tensor memory: parameters + buffers + input, plus the peak of the bytes allocated '
                     "minus freed by PyTorch's CPU allocator during one forward (torch.profiler memory records, "
                     'kernel scratch buffers included); not comparable with CUDA figures')


def peak_memory(net: nn.Module, x: torch.Tensor) -> Tuple[int, str]:
    """Peak memory in bytes of one forward of ``net`` on ``x`` and how it was measured.

    On CUDA this is the protocol's ``torch.cuda.max_memory_allocated()``. On the CPU, which has no such counter,
    every allocation and release of PyTorch's CPU allocator during the forward is recorded by
    ``torch.profiler`` (``profile_memory=True``); the peak of their running sum, in time order, is added to the
    bytes of the parameters, buffers and input held before the forward. Allocations outside PyTorch's allocator
    (oneDNN's JIT code, the Python heap) are not seen; this is a CPU figure, not an estimate of GPU memory.
    """
    if x.is_cuda:
        return _cuda_peak_memory(net, x), CUDA_MEMORY_METHOD
    return _cpu_peak_memory(net, x), CPU_MEMORY_METHOD


def forward_runtimes(net: nn.Module, x: torch.Tensor, repeat: int, warmup: int) -> List[float]:
    """Seconds of ``repeat`` forward passes under ``torch.no_grad`` after ``warmup`` untimed ones (CUDA synced)."""
    sync = (lambda: torch.cuda.synchronize(x.device)) if x.is_cuda else (lambda: None)
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            net(x)
        for _ in range(repeat):
            sync()
            start = time.perf_counter()
            net(x)
            sync()
            times.append(time.perf_counter() - start)
    return times


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo (``platform.processor()`` where there is none)."""
    if os.path.isfile('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """What the runtime was measured on: the GPU's name, or the CPU model and torch's intra-op thread count."""
    if device.type == 'cuda':
        return f'{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}, torch {torch.__version__})'
    return f'{cpu_model()}, {torch.get_num_threads()} threads (CPU, torch {torch.__version__})'


def resolve_device(choice: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without CUDA is an error rather than a silent CPU run."""
    if choice == 'auto':
        choice = 'cuda' if torch.cuda.is_available() else 'cpu'
    if choice == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('--device cuda was asked for, but torch.cuda.is_available() is False.')
    return torch.device(choice)


def measure(name: str,
            network_options: dict,
            input_size: int,
            device: torch.device,
            repeat: int,
            warmup: int,
            in_channels: int = 3) -> EfficiencyReport:
    """Every metric of the protocol for one network: :func:`measure_in_turns` of that network alone."""
    return measure_in_turns([(name, network_options)], input_size, device, repeat, warmup, in_channels)[0]


def measure_in_turns(networks: Sequence[Tuple[str, dict]],
                     input_size: int,
                     device: torch.device,
                     repeat: int,
                     warmup: int,
                     in_channels: int = 3) -> List[EfficiencyReport]:
    """Build each ``(name, network_options)`` with ``basicsr.archs.build_network`` and take every metric of the
    protocol, the runtimes in turns so that a busy machine slows every network alike.

    Counts come from :func:`count_ops` (meta device). On ``device``, every network runs ``warmup`` untimed forwards,
    then ``repeat`` rounds each time one forward of every network (:func:`forward_runtimes` with ``repeat=1``), the
    order turning by one network per round; one more forward each gives :func:`peak_memory`. Compare the networks by
    the medians of their runtimes (``EfficiencyReport.runtime_median_s``).
    """
    from basicsr.archs import build_network

    shape = [1, in_channels, input_size, input_size]
    built = []
    for name, options in networks:
        net = build_network(options).eval()
        counts = count_ops(net, shape)
        built.append((name, options, counts, net.to(device)))
    x = torch.rand(shape, device=device)
    runtimes = {name: [] for name, *_ in built}
    for name, _, _, net in built:
        forward_runtimes(net, x, 0, warmup)
    for round_index in range(repeat):
        for i in range(len(built)):
            name, _, _, net = built[(round_index + i) % len(built)]
            runtimes[name] += forward_runtimes(net, x, 1, 0)
    reports = []
    for name, options, counts, net in built:
        memory, method = peak_memory(net, x)
        reports.append(
            EfficiencyReport(name, dict(options), shape, counts, memory, method, device_name(device), warmup,
                             runtimes[name]))
    return reports


def parse_arch_options(pairs: Iterable[str]) -> dict:
    """``['num_feat=64', 'upscale=4']`` to ``{'num_feat': 64, 'upscale': 4}``; values are read as YAML scalars."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep or not key:
            raise ValueError(f'arch option {pair!r} is not of the form key=value.')
        options[key] = yaml.safe_load(value)
    return options


def network_options_from_yaml(path: str, section: str = 'network_g') -> dict:
    """The ``section`` (``network_g``, ``network_t``...) of a BasicSR option file: ``type`` and its arguments."""
    with open(path) as f:
        opt = yaml.safe_load(f)
    if not isinstance(opt.get(section), dict) or 'type' not in opt[section]:
        sections = sorted(k for k, v in opt.items() if isinstance(v, dict) and 'type' in v)
        raise KeyError(f'{path}: no network section {section!r}; sections with a type: {sections}.')
    return dict(opt[section])


def arch_label(options: dict) -> str:
    """``MSRResNet(num_feat=64, num_block=16)``: the arch type and its arguments."""
    args = ', '.join(f'{k}={v}' for k, v in options.items() if k != 'type')
    return f"{options['type']}({args})"


def markdown_table(reports: List[EfficiencyReport]) -> str:
    """One row per network, the device and memory method stated above the table."""
    header = ('| Network | #Params | FLOPs [G] | of which conv/linear MACs [G] | #Activations [M] | #Conv '
              '| Peak memory [MiB] | Runtime [ms] |\n|---|---:|---:|---:|---:|---:|---:|---:|')
    rows = [
        f'| {r.name} | {r.counts.params:,} | {r.counts.flops / 1e9:.2f} | {r.counts.macs / 1e9:.2f} '
        f'| {r.counts.activations / 1e6:.2f} | {r.counts.convs} | {r.peak_memory_bytes / MIB:.1f} '
        f'| {r.runtime_median_s * 1e3:.1f} |' for r in reports
    ]
    notes = _table_notes(reports)
    return '\n'.join(notes + ['', header] + rows) + '\n'


def _table_notes(reports: List[EfficiencyReport]) -> List[str]:
    first = reports[0]
    shape = 'x'.join(str(s) for s in first.input_shape[1:])
    devices = sorted({r.device for r in reports})
    methods = sorted({r.memory_method for r in reports})
    repeats = sorted({f'median of {len(r.runtimes_s)} forwards after {r.warmup} warm-up' for r in reports})
    return [
        f'Input: one LR image of {shape}. Device: {"; ".join(devices)}.',
        'FLOPs: AIM 2020 counting (conv/linear multiply-accumulates without bias + one op per output element of '
        'activation modules and BatchNorm); #Activations: elements of all conv outputs.',
        f'Peak memory: {"; ".join(methods)}.', f'Runtime: {"; ".join(repeats)} (torch.no_grad)' +
        ('; one forward of each network per round, in turns.' if len(reports) > 1 else '.')
    ]


def json_document(reports: List[EfficiencyReport], command: Optional[str] = None) -> Dict[str, object]:
    """The JSON written next to the Markdown table: definitions, the command, one record per network."""
    return {
        'protocol': 'AIM 2020 efficient SR challenge (Zhang et al., ECCVW 2020), counted by kdplugins',
        'definitions': {
            'flops': 'macs + elementwise_ops',
            'macs': 'multiply-accumulates of conv, transposed conv and linear modules, bias excluded',
            'elementwise_ops': 'output elements of ReLU/LeakyReLU/PReLU/ELU/ReLU6 modules, and of '
            'BatchNorm2d (x2 when affine)',
            'activations': 'elements of all (transposed) conv outputs',
            'convs': '(transposed) conv module executions'
        },
        'command': command,
        'torch': torch.__version__,
        'networks': [r.to_dict() for r in reports]
    }
