"""Faster training steps (``train.speed``): channels_last, mixed precision with a saved gradient scaler, and the
teacher's precision on its own.

``train.speed`` options (defaults in :data:`SPEED_DEFAULTS`, all off: each is a choice measured per device, see
docs/training.md "Faster steps"):

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
"""
import contextlib
import torch
from torch import nn
from typing import Iterable, Optional

SPEED_DEFAULTS = {'channels_last': False, 'precision': 'fp32', 'teacher_precision': 'fp32'}
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def speed_options(train_opt: dict) -> dict:
    """``train.speed`` with its defaults, values checked (errors name the option and the valid values)."""
    given = dict(train_opt.get('speed') or {})
    unknown = sorted(set(given) - set(SPEED_DEFAULTS))
    if unknown:
        raise ValueError(f'Unknown option(s) train.speed.{unknown}; valid options: {", ".join(SPEED_DEFAULTS)}.')
    options = {**SPEED_DEFAULTS, **given}
    for key in ('precision', 'teacher_precision'):
        if options[key] not in DTYPES:
            raise ValueError(f'train.speed.{key} is {options[key]!r}; valid values: {", ".join(DTYPES)}.')
    if not isinstance(options['channels_last'], bool):
        raise ValueError(f'train.speed.channels_last must be true or false, got {options["channels_last"]!r}.')
    return options


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


def teacher_input(lq: torch.Tensor, teacher_precision: str) -> torch.Tensor:
    """The LR batch in the teacher's precision."""
    return lq.to(DTYPES[teacher_precision])
