"""Several frozen teachers, one distillation target: the plain multi-teacher baseline (``train.multi_teacher``).

The teachers are the ``network_t`` / ``network_t_<name>`` sections (:mod:`kdplugins.distill.teacher`); each returns
its output in [0, 1]. ``combine`` says how their outputs ``T_1 .. T_N`` of one batch make the target of ``kd_opt``:

* ``mean``: ``(1/N) sum_i T_i``.
* ``fixed``: ``sum_i w_i T_i`` with ``w_i = weights[i] / sum_j weights[j]`` (the weights of every teacher, by section
  name, normalised to sum 1).
* ``error``: per pixel, ``sum_i w_i(p) T_i(p)`` with ``w_i(p) = softmax_i(-e_i(p) / temperature)`` and
  ``e_i(p) = mean_c |T_i(p, c) - HR(p, c)|``: at each pixel the teachers closer to the ground truth weigh more (the
  weights of a pixel sum to 1; ``temperature`` -> 0 picks the best teacher per pixel, -> infinity gives ``mean``).
  It needs the HR batch, so it applies where the target is made for the training pairs.

This is the baseline the multi-teacher issue asks for (no learnt aggregation, every teacher frozen); MTKD's learnt
aggregator is a separate piece. *Every device.*
"""
import torch
from typing import Dict, Mapping, Optional

from kdplugins.utils.declared_options import Option
from kdplugins.utils.errors import ConfigurationError

COMBINATIONS = ('mean', 'fixed', 'error')
MULTI_TEACHER_OPTIONS = {
    'combine': Option('mean', choices=COMBINATIONS, help="how the teachers' outputs make kd_opt's target"),
    'weights': Option({}, minimum=0, help='combine: fixed: the weight of every teacher, by section name'),
    'temperature': Option(0.01, minimum=1e-6, help='combine: error: softmax temperature of the per-pixel L1 errors'),
}


class MultiTeacherError(ConfigurationError, ValueError):
    """``train.multi_teacher`` does not fit the teachers of the options."""


def normalised_weights(combine: str, weights: Mapping[str, float], teachers: list) -> Dict[str, float]:
    """The weight of each teacher for ``combine: fixed`` (normalised to sum 1); every teacher must have one."""
    if combine != 'fixed':
        if weights:
            raise MultiTeacherError(f'train.multi_teacher.weights is set but combine is {combine!r}: the weights '
                                    'apply to combine: fixed only. Set combine: fixed, or remove the weights.')
        return {}
    missing = [t for t in teachers if t not in weights]
    unknown = [w for w in weights if w not in teachers]
    if missing or unknown:
        raise MultiTeacherError('train.multi_teacher.weights must give one weight per teacher section '
                                f'({", ".join(teachers)}): ' + '; '.join(
                                    part for part in (f'missing {", ".join(missing)}' if missing else '',
                                                      f'no teacher section {", ".join(unknown)}' if unknown else '')
                                    if part) + '.')
    total = float(sum(weights.values()))
    if total <= 0:
        raise MultiTeacherError('train.multi_teacher.weights are all 0: give at least one teacher a positive weight.')
    return {t: float(weights[t]) / total for t in teachers}


def combine_outputs(outputs: Mapping[str, torch.Tensor],
                    combine: str,
                    weights: Mapping[str, float],
                    temperature: float,
                    hr: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The target made of the teachers' ``outputs`` (module docstring); ``weights`` from
    :func:`normalised_weights`."""
    names = list(outputs)
    if len(names) == 1:
        return outputs[names[0]]
    if combine == 'mean':
        total = outputs[names[0]]
        for name in names[1:]:
            total = total + outputs[name]
        return total / len(names)
    if combine == 'fixed':
        total = weights[names[0]] * outputs[names[0]]
        for name in names[1:]:
            total = total + weights[name] * outputs[name]
        return total
    if hr is None:
        raise MultiTeacherError('train.multi_teacher.combine: error weighs each teacher by its error against HR, but '
                                'this target is made for inputs without HR. Use combine: mean or fixed.')
    stacked = torch.stack([outputs[name] for name in names])  # N, B, C, H, W
    errors = (stacked - hr.to(stacked.dtype).unsqueeze(0)).abs().mean(dim=2, keepdim=True)
    pixel_weights = torch.softmax(-errors / temperature, dim=0)
    return (pixel_weights * stacked).sum(dim=0)
