"""ONNX, TorchScript, safetensors and spandrel files of a network, and runners that load them back.

ONNX: PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``), opset 17 by default, input
``lq`` and output ``sr`` in NCHW float32 with symbolic batch, height and width. Torch 2.9 made the ``torch.export``
based exporter (``dynamo=True``) the default; the older one is kept here because it needs no ``onnxscript``, exports
these networks several times faster and handles their dynamic sides without per-arch minimum sizes (docs/deploy.md,
"Exporter"). TorchScript: ``torch.jit.trace`` of the network in eval mode; sizes are traced as operations, so the
file runs at other sizes too (checked at two sizes by ``python -m kdplugins.export``). Both PyTorch APIs are marked
deprecated in torch 2.14 and still work; their warnings are silenced here, the choice being documented.
safetensors: the network's plain ``state_dict`` (every tensor its own copy, as safetensors stores no shared tensors)
with the export's metadata (``network_g``, ``custom_imports``, ``scale``, ``input``: JSON strings); loaded back by
:func:`load_safetensors_network` (``build_network`` of the metadata, strict ``load_state_dict``), it gives the same
outputs bit for bit. spandrel: the state_dict in the key layout that spandrel detects (:mod:`.spandrel_layout`).
"""
import contextlib
import json
import numpy as np
import os
import torch
import warnings
from basicsr.archs import build_network
from torch import nn
from typing import Callable, Dict, Iterator, Optional

from kdplugins.deploy import spandrel_layout
from kdplugins.runtime.custom_imports import import_modules
from kdplugins.utils.errors import ConfigurationError

INPUT_NAME, OUTPUT_NAME = 'lq', 'sr'
DEFAULT_OPSET = 17
EXTENSIONS = {'onnx': '.onnx', 'torchscript': '.pt', 'safetensors': '.safetensors', 'spandrel': '.spandrel.safetensors'}
# what loads each file back for the checks of ``python -m kdplugins.export``
ENGINES = {
    'onnx': 'onnxruntime',
    'torchscript': 'torch.jit.load',
    'safetensors': 'build_network + load_state_dict',
    'spandrel': 'spandrel ModelLoader'
}
Runner = Callable[[np.ndarray], np.ndarray]


class MissingExtraError(ConfigurationError, ImportError):
    """onnx / onnxruntime / safetensors are not installed; the message says how to install them."""


@contextlib.contextmanager
def _quiet_deprecations() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=FutureWarning, module=r'torch\.jit')
        warnings.filterwarnings('ignore', category=DeprecationWarning, module=r'torch\.onnx')
        warnings.filterwarnings('ignore', category=DeprecationWarning, message='.*legacy TorchScript-based ONNX')
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        yield


def import_onnx():
    """``(onnx, onnxruntime)``, or an error naming the extra that installs them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise MissingExtraError(f'ONNX export and onnxruntime checks need the export extra: pip install '
                                f"'kdplugins[export]' (or pip install onnx onnxruntime); {error}.") from error
    return onnx, onnxruntime


def import_safetensors():
    """``safetensors.torch``, or an error naming the extra that installs it."""
    try:
        import safetensors.torch
    except ImportError as error:
        raise MissingExtraError(f'safetensors files need the export extra: pip install \'kdplugins[export]\' (or pip '
                                f'install safetensors); {error}.') from error
    return safetensors.torch


def import_for(kinds) -> None:
    """Import the packages that writing and checking ``kinds`` need, before anything is written."""
    if 'onnx' in kinds:
        import_onnx()
    if 'safetensors' in kinds or 'spandrel' in kinds:
        import_safetensors()
    if 'spandrel' in kinds:
        spandrel_layout.import_spandrel()


def save_safetensors(state_dict: Dict[str, torch.Tensor], path: str, metadata: Dict[str, object]) -> None:
    """``state_dict`` (each tensor copied: safetensors refuses tensors that share memory) to ``path`` with
    ``metadata`` as JSON strings."""
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in state_dict.items()}
    import_safetensors().save_file(tensors, path, metadata={key: json.dumps(value) for key, value in metadata.items()})


def read_safetensors_metadata(path: str) -> Dict[str, object]:
    """The metadata of a safetensors file, JSON values decoded (:func:`save_safetensors`; other writers' plain
    strings are kept as they are)."""
    import_safetensors()
    from safetensors import safe_open
    with safe_open(path, 'pt') as f:
        metadata = dict(f.metadata() or {})
    for key, value in metadata.items():
        try:
            metadata[key] = json.loads(value)
        except ValueError:
            pass
    return metadata


def load_safetensors_network(path: str) -> nn.Module:
    """The network of a ``safetensors`` export: its metadata's ``custom_imports`` imported, ``network_g`` built, the
    weights loaded strictly; in eval mode on the CPU."""
    metadata = read_safetensors_metadata(path)
    if 'network_g' not in metadata:
        raise ConfigurationError(f'{path}: no network_g in its metadata; it was not written by python -m '
                                 'kdplugins.export --format safetensors. Load it with the option file it was trained '
                                 'with.')
    import_modules(metadata.get('custom_imports') or [], f'{path}: custom_imports')
    net = build_network(dict(metadata['network_g']))
    net.load_state_dict(import_safetensors().load_file(path))
    return net.eval()


def export_torchscript(net: nn.Module, example: torch.Tensor, path: str) -> None:
    """Trace ``net`` (eval mode, no gradients) on ``example`` and save it to ``path``."""
    with _quiet_deprecations(), torch.no_grad():
        traced = torch.jit.trace(net.eval(), example, check_trace=False)
        traced.save(path)


def export_onnx(net: nn.Module,
                example: torch.Tensor,
                path: str,
                opset: int = DEFAULT_OPSET,
                metadata: Optional[Dict[str, object]] = None) -> None:
    """Export ``net`` to ``path`` with symbolic batch, height and width; ``metadata`` goes into the model's
    ``metadata_props`` (JSON values)."""
    onnx, _ = import_onnx()
    axes = {INPUT_NAME: {0: 'batch', 2: 'height', 3: 'width'}, OUTPUT_NAME: {0: 'batch', 2: 'sr_height', 3: 'sr_width'}}
    with _quiet_deprecations(), torch.no_grad():
        torch.onnx.export(
            net.eval(), (example, ),
            path,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes)
    if metadata:
        model = onnx.load(path)
        for key, value in metadata.items():
            model.metadata_props.add(key=key, value=json.dumps(value))
        onnx.save(model, path)
    onnx.checker.check_model(path)


def onnx_session(path: str, threads: int = 0):
    """An onnxruntime CPU session of ``path``; ``threads`` intra-op threads (0: onnxruntime's default)."""
    _, onnxruntime = import_onnx()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def onnx_runner(path: str, threads: int = 0) -> Runner:
    """NCHW float32 array in, the model's output array out, through onnxruntime on the CPU."""
    session = onnx_session(path, threads)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def torchscript_runner(path: str) -> Runner:
    """NCHW float32 array in, output array out, through ``torch.jit.load`` on the CPU."""
    with _quiet_deprecations():
        module = torch.jit.load(path, map_location='cpu').eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return run


def export(kind: str,
           net: nn.Module,
           example: torch.Tensor,
           folder: str,
           name: str,
           opset: int = DEFAULT_OPSET,
           metadata: Optional[Dict[str, object]] = None) -> str:
    """Write ``net`` as ``kind`` (a key of :data:`EXTENSIONS`) to ``folder/name<extension>``; the path. ``opset``
    applies to ONNX; ``metadata`` (``network_g``, ``scale``, ...) goes into ONNX, safetensors and spandrel files."""
    path = os.path.join(folder, name + EXTENSIONS[kind])
    metadata = metadata or {}
    if kind == 'onnx':
        export_onnx(net, example, path, opset, metadata)
    elif kind == 'torchscript':
        export_torchscript(net, example, path)
    elif kind == 'safetensors':
        save_safetensors(net.state_dict(), path, metadata)
    else:
        options = metadata['network_g']
        state = spandrel_layout.spandrel_state_dict(net.state_dict(), options)
        save_safetensors(state, path, dict(metadata, spandrel_arch=spandrel_layout.layout_of(options).arch))
    return path


def module_runner(net: nn.Module) -> Runner:
    """NCHW float32 array in, output array out, through ``net`` without gradients (the input is copied first)."""

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(x.copy())).numpy()

    return run


def runner(kind: str, path: str) -> Runner:
    """The runner of an exported file of ``kind``; onnxruntime gets PyTorch's intra-op thread count."""
    if kind == 'onnx':
        return onnx_runner(path, torch.get_num_threads())
    if kind == 'torchscript':
        return torchscript_runner(path)
    if kind == 'safetensors':
        return module_runner(load_safetensors_network(path))
    metadata = read_safetensors_metadata(path)
    return module_runner(spandrel_layout.load_checked(path, metadata['spandrel_arch'], metadata['scale']))
