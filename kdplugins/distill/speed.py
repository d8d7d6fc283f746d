"""Faster training steps (``train.speed``): channels_last, mixed precision with a saved gradient scaler, and the
teacher's precision on its own.

``train.speed`` options (declared in :data:`SPEED_OPTIONS`, all off: each is a choice measured per device, see
docs/training.md "Faster steps"; the benchmarks: :mod:`kdplugins.experiments.speed_benchmark`):

* ``channels_last``: student, teacher, trainable distillation modules and the LR / HR batches in
  ``torch.channels_last`` memory format (same values, another layout; the convolutions pick other kernels, so results
  differ from the default layout in the last bits).
* ``precision``: ``fp32``, ``bf16`` or ``fp16`` autocast of the student's forward and the losses
  (``torch.autocast``); weights, gradients and optimizer state stay fp32. ``fp16`` scales the loss with a
  ``torch.amp.GradScaler`` whose state is saved in the training state and restored on resume (a step whose
  gradients overflow is skipped by the scaler, which then lowers the scale).
* ``teacher_precision``: ``fp32``, ``bf16`` or ``fp16`` weights and forward of the frozen teacher (its output and
  tapped features are handed to the losses in fp32). docs/training.md gives how far each moves the pretrained
  teachers' Set5 PSNR-Y.
* ``compile``: ``[student]``, ``[teacher]`` or both: ``torch.compile`` of these networks in place
  (``nn.Module.compile``: checkpoints keep their keys, DDP wraps the compiled student, feature taps are traced with
  the forward), with ``compile_backend`` (``inductor``; ``aot_eager`` compiles in seconds and is what the tests use).
  New input shapes (AugKD's zoom-out, validation images) and CSD's widths compile once more each. A slimmable
  network (CSD) is compiled only on torch >= :data:`SLIMMABLE_COMPILE_VERIFIED`: torch 2.3.1 reused the graph of
  the first width for the other (the teacher pass returned the student's output, l_csd 0), measured by
  ``tests/test_speed.py::test_compiled_slimmable_student_runs_both_widths``; the versions between are not verified.
"""
import contextlib
import torch
from torch import nn
from typing import Iterable, Optional

from kdplugins.archs.slimmable import SlimmableMixin
from kdplugins.utils.declared_options import Option
from kdplugins.utils.errors import ConfigurationError

COMPILABLE = ('student', 'teacher')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
SPEED_OPTIONS = {
    'channels_last': Option(False, help='networks and batches in channels_last layout'),
    'precision': Option('fp32', choices=DTYPES, help="the step's autocast precision"),
    'teacher_precision': Option('fp32', choices=DTYPES, help="the frozen teacher's weights and forward"),
    'compile': Option([], choices=COMPILABLE, help='networks compiled in place'),
    'compile_backend': Option('inductor', help='torch.compile backend'),
}

SLIMMABLE_COMPILE_VERIFIED = '2.14'


class CompileError(ConfigurationError, ValueError):
    """``train.speed.compile`` asks for a compilation this torch gets wrong."""


def compile_in_place(module: nn.Module, backend: str) -> None:
    """``torch.compile`` of ``module``'s calls, the module and its state_dict unchanged (``nn.Module.compile``)."""
    if isinstance(module, SlimmableMixin) and torch.__version__ < SLIMMABLE_COMPILE_VERIFIED:
        raise CompileError(
            f'train.speed.compile: {type(module).__name__} runs at several widths, and torch {torch.__version__} '
            'compiles one width\'s graph for all of them (the teacher pass would return the student\'s output). '
            f'Use torch >= {SLIMMABLE_COMPILE_VERIFIED}, or leave this network out of train.speed.compile.')
    module.compile(backend=backend)


def to_channels_last(modules: Iterable[Optional[nn.Module]]) -> None:
    """Parameters and buffers of 4-D shape in channels_last layout (the modules are changed in place)."""
    for module in modules:
        if module is not None:
            module.to(memory_format=torch.channels_last)


class MixedPrecision:
    """Autocast of the training forward and, for fp16, a gradient scaler around backward and optimizer step.

    With ``fp32`` every method is the plain step: ``backward`` calls ``loss.backward()``, ``step`` calls
    ``optimizer.step()``, and :meth:`autocast` is a null context.
    """

    def __init__(self, precision: str, device: torch.device):
        self.precision = precision
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type) if precision == 'fp16' else None

    def autocast(self):
        """Context of the forward passes and losses of one step."""
        if self.precision == 'fp32':
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=DTYPES[self.precision])

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Optimizer step (skipped by the scaler when fp16 gradients overflowed), then the scale's update."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> Optional[dict]:
        return self.scaler.state_dict() if self.scaler else None

    def load_state_dict(self, state: Optional[dict]) -> None:
        """Restore the scaler; a state without one (saved in fp32 or bf16) starts the scaler afresh."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
