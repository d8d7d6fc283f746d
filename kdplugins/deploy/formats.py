"""TorchScript and ONNX files of a network, with any batch size, height and width, and runners that load them back.

ONNX: PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``), opset 17 by default, input
``lq`` and output ``sr`` in NCHW float32 with symbolic batch, height and width. Torch 2.9 made the ``torch.export``
based exporter (``dynamo=True``) the default; the older one is kept here because it needs no ``onnxscript``, exports
these networks several times faster and handles their dynamic sides without per-arch minimum sizes (docs/deploy.md,
"Exporter"). TorchScript: ``torch.jit.trace`` of the network in eval mode; sizes are traced as operations, so the
file runs at other sizes too (checked at two sizes by ``python -m kdplugins.export``). Both PyTorch APIs are marked
deprecated in torch 2.14 and still work; their warnings are silenced here, the choice being documented.
"""
import contextlib
import json
import numpy as np
import os
import torch
import warnings
from torch import nn
from typing import Callable, Dict, Iterator, Optional

from kdplugins.utils.errors import ConfigurationError

INPUT_NAME, OUTPUT_NAME = 'lq', 'sr'
DEFAULT_OPSET = 17
EXTENSIONS = {'onnx': '.onnx', 'torchscript': '.pt'}
Runner = Callable[[np.ndarray], np.ndarray]


class MissingExtraError(ConfigurationError, ImportError):
    """onnx / onnxruntime are not installed; the message says how to install them."""


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
    """Write ``net`` as ``kind`` (``onnx`` or ``torchscript``) to ``folder/name.onnx`` or ``.pt``; the path.
    ``opset`` and ``metadata`` apply to ONNX."""
    path = os.path.join(folder, name + EXTENSIONS[kind])
    if kind == 'onnx':
        export_onnx(net, example, path, opset, metadata)
    else:
        export_torchscript(net, example, path)
    return path


def runner(kind: str, path: str) -> Runner:
    """The runner of an exported file of ``kind``; onnxruntime gets PyTorch's intra-op thread count."""
    return onnx_runner(path, torch.get_num_threads()) if kind == 'onnx' else torchscript_runner(path)
