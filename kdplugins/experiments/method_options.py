"""The one method-to-options builder: the model and the ``train`` losses of each distillation method with its weights
(:data:`METHODS`, data), turned into options by :func:`method_options`. The paper recipes
(:mod:`kdplugins.experiments.paper_recipes`) and the reproduction (:mod:`kdplugins.experiments.reproduction`) both
build every method's options here; they differ only in the networks, the tapped layers and the settings they pass.

Weights (docs/conventions.md): pixel and output-KD terms are L1 with weight 1 unless a paper says otherwise; a weight
published next to an L1 pixel loss on [0, 255] images is divided by 255 (CSD's λ_C 200, FAKD's 10); the weights of
FitNet, AT, RKD and CRD, published for classification, are calibrated for SR (their ``*_WEIGHT_DEFAULT``). The values
of ``options/train/FeatureKD`` and ``options/train/CRD``; regenerate ``options/train/paper`` after a change.
"""
import copy
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

from kdplugins.losses.memsr_loss import MEMSR_EPSILON, MEMSR_LAMBDA
from kdplugins.losses.published_weights import (AT_WEIGHT_DEFAULT, CRD_WEIGHT_DEFAULT, CSD_LAMBDA_C_DEFAULT,
                                                FAKD_WEIGHT_DEFAULT, RKD_WEIGHT_DEFAULT)
from kdplugins.memsr.convert import DEFAULT_OFFSET
from kdplugins.models.csd_model import CSD_OPTIONS

# What a method is, besides its train blocks (every other key of an entry is a block of ``train``, written in order):
# model_type; pixel / kd: weights of the L1 pixel and output-KD terms (kd absent: none); feature_loss: the loss of
# each tapped layer pair, taps: which pairs ('end': the end of both bodies, the deepest LR features before
# conv_after_body; 'thirds': after a third and two thirds of the bodies and at their ends, FAKD's three taps);
# dataset_type: the training dataset a loss needs (CRD's sample indices).
RECIPE_KEYS = ('model_type', 'pixel', 'kd', 'feature_loss', 'taps', 'dataset_type')

METHODS = {
    'Scratch': {
        'model_type': 'SRModel',
        'pixel': 1.0
    },
    'KD': {  # AugKD Eq. 1-2
        'model_type': 'KDModel',
        'pixel': 1.0,
        'kd': 1.0
    },
    'FitNet': {
        'model_type': 'KDModel',
        'pixel': 1.0,
        'kd': 1.0,
        'feature_loss': {
            'type': 'FitNetLoss',
            'loss_weight': 1e-3  # the term scales with EDSR's [0, 255] features: near the pixel loss (untuned)
        },
        'taps': 'end'
    },
    'AT': {
        'model_type': 'KDModel',
        'pixel': 1.0,
        'kd': 1.0,
        'feature_loss': {
            'type': 'ATLoss',
            'loss_weight': AT_WEIGHT_DEFAULT,
            'p': 2
        },
        'taps': 'end'
    },
    'RKD': {
        'model_type': 'KDModel',
        'pixel': 1.0,
        'kd': 1.0,
        'feature_loss': {
            'type': 'RKDLoss',
            'distance_weight': 25.0,
            'angle_weight': 50.0,
            'loss_weight': RKD_WEIGHT_DEFAULT,
            'pool_size': 1
        },
        'taps': 'end'
    },
    'CRD': {
        'model_type': 'KDModel',
        'pixel': 1.0,
        'kd': 1.0,
        'feature_loss': {
            'type': 'CRDLoss',
            'loss_weight': CRD_WEIGHT_DEFAULT,
            'feat_dim': 128,
            'nce_k': 16384,
            'nce_k_cap': True,
            'nce_t': 0.07,
            'nce_m': 0.5,
            'n_data': 'auto',
            'pool_size': 1
        },
        'taps': 'end',
        'dataset_type': 'PairedImageDatasetWithIndex'
    },
    'FAKD': {  # the FAKD code: pixel and KD 0.5 each, 10 per tap next to an L1 pixel loss on [0, 255]
        'model_type': 'KDModel',
        'pixel': 0.5,
        'kd': 0.5,
        'feature_loss': {
            'type': 'FAKDLoss',
            'loss_weight': FAKD_WEIGHT_DEFAULT,
            'criterion': 'l1'
        },
        'taps': 'thirds'
    },
    # CrossKD (Fang et al. 2023; AugKD Table 3): the student's features through the teacher's upsampling tail; the paper
    # gives no weights: pixel, KD and cross terms at 1 each, as KD's (this project's choice)
    'CrossKD': {
        'model_type': 'CrossKDModel',
        'pixel': 1.0,
        'kd': 1.0,
        'crosskd': {
            'student_layer': 'upsample',
            'teacher_layer': 'upsample'
        },
        'crosskd_opt': {
            'type': 'CrossKDLoss',
            'loss_weight': 1.0
        }
    },
    'AugKD': {  # AugKD Eq. 4; its auxiliary terms and augmentations: the model's defaults unless a caller spells them
        'model_type': 'AugKDModel',
        'pixel': 1.0,
        'kd': 1.0
    },
    'CSD': {  # CSD Eq. 1 and 3: L1(S, HR) + λ_T L1(T, HR) + λ_C CL, λ_T = 1, λ_C = 200 next to L1 on [0, 255]
        'model_type': 'CSDModel',
        'pixel': 1.0,
        'teacher_pixel_opt': {
            'type': 'L1Loss',
            'loss_weight': 1.0
        },
        'csd': {
            'width_mult': CSD_OPTIONS['width_mult'].default,
            'detach_teacher': True
        },
        'contrastive_opt': {
            'type': 'CSDContrastiveLoss',
            'loss_weight': CSD_LAMBDA_C_DEFAULT
        }
    },
    'JT': {  # CSD's joint-training baseline J-T: Eq. 1 only
        'model_type': 'CSDModel',
        'pixel': 1.0,
        'teacher_pixel_opt': {
            'type': 'L1Loss',
            'loss_weight': 1.0
        },
        'csd': {
            'width_mult': CSD_OPTIONS['width_mult'].default,
            'detach_teacher': True
        },
        'contrastive_opt': {
            'type': 'CSDContrastiveLoss',
            'loss_weight': 0.0
        }
    },
    'MemSR': {  # MemSR Eq. 13-14: L1 + λ ε^(iter / total_iter) L_distill (Sec. 4.1: λ 0.3, ε 1e-5, C 1000)
        'model_type': 'MemSRModel',
        'pixel': 1.0,
        'memsr_opt': {
            'type': 'MemSRLoss',
            'loss_weight': MEMSR_LAMBDA,
            'epsilon': MEMSR_EPSILON
        },
        'memsr': {
            'offset': DEFAULT_OFFSET
        }
    },
}


@dataclass
class MethodOptions:
    """What a method sets in an option file: ``model_type``, entries of ``train`` (in the order they are written) and
    the training dataset's ``type`` when a loss needs its own (else None)."""
    model_type: str
    train: dict
    dataset_type: Optional[str] = None


def l1(weight: float) -> dict:
    return {'type': 'L1Loss', 'loss_weight': weight}


def method_options(method: str, taps: Sequence[Tuple[str, str]] = (), **settings) -> MethodOptions:
    """The options of ``method`` (a key of :data:`METHODS`): ``pixel_opt``, ``kd_opt``, one feature loss per
    ``(student_layer, teacher_layer)`` of ``taps`` (for a method with a ``feature_loss``) and the method's blocks.

    ``settings`` change the entry of :data:`METHODS` for this call: a mapping updates the entry's mapping of the same
    name (``contrastive_opt={'num_negatives': 7}``) or adds a block after the method's own (``augkd={...}``); any
    other value replaces the entry's (``pixel=0.5``, ``kd=None``: no output-KD term)."""
    spec = copy.deepcopy(METHODS[method])
    for name, value in settings.items():
        spec[name] = {**spec[name], **value} if isinstance(value, dict) and isinstance(spec.get(name), dict) else value
    if spec.get('feature_loss') and not taps:
        raise ValueError(f'method_options({method!r}): a feature loss needs taps, the (student_layer, teacher_layer) '
                         'pairs of the two networks.')
    train = {'pixel_opt': l1(spec['pixel'])}
    if spec.get('kd'):
        train['kd_opt'] = l1(spec['kd'])
    if spec.get('feature_loss'):
        train['feature_losses'] = [
            dict(spec['feature_loss'], student_layer=student, teacher_layer=teacher) for student, teacher in taps
        ]
    train.update({name: value for name, value in spec.items() if name not in RECIPE_KEYS})
    return MethodOptions(spec['model_type'], train, spec.get('dataset_type'))


def feature_settings(train_opt: Dict) -> Tuple[list, dict]:
    """``(taps, settings)`` of :func:`method_options` that give back the pixel, output-KD and feature losses of an
    option file's ``train`` (one feature loss setting shared by every tap)."""
    losses = train_opt['feature_losses']
    taps = [(loss['student_layer'], loss['teacher_layer']) for loss in losses]
    loss_settings = [{k: v for k, v in loss.items() if k not in ('student_layer', 'teacher_layer')} for loss in losses]
    if any(setting != loss_settings[0] for setting in loss_settings):
        raise ValueError(f'feature_settings: the taps of {losses[0]["type"]} have different settings; a method has one '
                         'feature loss setting for all its taps.')
    for name in ('pixel_opt', 'kd_opt'):
        given = train_opt.get(name)
        if given is not None and given != l1(given.get('loss_weight')):
            raise ValueError(f'feature_settings: train.{name} is {given}; a method\'s pixel and output-KD terms are '
                             '{type: L1Loss, loss_weight: w}.')
    kd = (train_opt.get('kd_opt') or {}).get('loss_weight')
    return taps, {'pixel': train_opt['pixel_opt']['loss_weight'], 'kd': kd, 'feature_loss': loss_settings[0]}
