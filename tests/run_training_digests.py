"""Train fixed tiny runs of KD (+FitNet, CRD), AugKD (+FAKD), CSD, MemSR and CrossKD for three steps each and print,
as JSON, ``{method: {"weights": sha256 of the student's state_dict, "losses": {name: repr(float)}}}``: the student's
tensors' bytes in state_dict order, and ``model.log_dict`` after the last step.

tests/test_architecture.py runs it in a fresh process (the global RNGs and basicsr's logger of the pytest process do
not reach it) and compares its output with tests/training_digests.json, the results of the code that made that file,
so that a change of the package that changes a result is seen. It uses only pieces a refactor of the run layer keeps:
option files, basicsr's ``parse_options`` / ``make_exp_dirs`` / ``build_model`` / ``build_dataset`` /
``build_dataloader``, ``feed_data``, ``optimize_parameters``, ``net_g`` and ``log_dict`` (no learning-rate schedule:
the scheduler is never stepped). One torch thread, so the results do not depend on the machine's thread count.

    python tests/run_training_digests.py WORKDIR LMDBS_JSON

LMDBS_JSON names the LMDBs of the ``tiny_lmdbs`` fixture (tests/conftest.py). Regenerate the stored digests (only
when a change of results is intended) with

    KDPLUGINS_WRITE_TRAINING_DIGESTS=1 python -m pytest -q tests/test_architecture.py -k stored_digests
"""
import hashlib
import json
import os
import sys
import torch
import yaml

import kdplugins  # noqa: F401

THREADS = 1  # torch threads of every run
STEPS = 3


def tiny_options(lmdbs: dict, name: str, model_type: str, network_g: dict, network_t: dict, teacher: str,
                 train: dict) -> dict:
    return {
        'name': name,
        'model_type': model_type,
        'scale': 2,
        'num_gpu': 0,
        'manual_seed': 10,
        'datasets': {
            'train': {
                'name': 'tiny_train',
                'type': 'PairedImageDatasetWithIndex',
                'dataroot_gt': lmdbs['train_hr'],
                'dataroot_lq': lmdbs['train_lr'],
                'io_backend': {
                    'type': 'lmdb'
                },
                'gt_size': 32,
                'use_hflip': True,
                'use_rot': True,
                'num_worker_per_gpu': 0,
                'batch_size_per_gpu': 4,
                'dataset_enlarge_ratio': 1
            }
        },
        'network_g': network_g,
        **({
            'network_t': network_t
        } if network_t else {}),
        'path': {
            'pretrain_network_g': None,
            'strict_load_g': True,
            'resume_state': None,
            **({
                'pretrain_network_t': teacher,
                'param_key_t': 'params'
            } if network_t else {})
        },
        'train': {
            'ema_decay': 0,
            'optim_g': {
                'type': 'Adam',
                'lr': 2e-3,
                'betas': [0.9, 0.99]
            },
            'scheduler': {  # built, never stepped: the learning rate stays 2e-3
                'type': 'MultiStepLR',
                'milestones': [1000],
                'gamma': 0.5
            },
            'total_iter': STEPS,
            'warmup_iter': -1,
            'pixel_opt': {
                'type': 'L1Loss',
                'loss_weight': 1.0
            },
            **train
        },
        'logger': {
            'print_freq': 1,
            'save_checkpoint_freq': 100,
            'use_tb_logger': False
        },
    }


TEACHERS = {
    'msrresnet': {
        'type': 'MSRResNet',
        'num_feat': 16,
        'num_block': 2,
        'upscale': 2
    },
    'pixelshuffle_edsr': {
        'type': 'PixelShuffleEDSR',
        'num_feat': 8,
        'num_block': 2,
        'upscale': 2
    },
    # CrossKD splits at the input of EDSR's 'upsample', where nothing bypasses it (tests/test_crosskd.py's pair)
    'edsr': {
        'type': 'EDSR',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': 12,
        'num_block': 2,
        'upscale': 2
    },
}


def runs(lmdbs: dict, teachers: dict) -> dict:
    """method -> options of its tiny x2 run; ``teachers``: name in :data:`TEACHERS` -> checkpoint path."""
    msrresnet_t = dict(TEACHERS['msrresnet'])
    msrresnet_s = {'type': 'MSRResNet', 'num_feat': 8, 'num_block': 1, 'upscale': 2}
    kd = {'kd_opt': {'type': 'L1Loss', 'loss_weight': 0.5}, 'teacher_check': False}
    return {
        'kd':
        tiny_options(
            lmdbs, 'ref_kd', 'KDModel', msrresnet_s, msrresnet_t, teachers['msrresnet'], {
                **kd, 'feature_losses': [{
                    'type': 'FitNetLoss',
                    'student_layer': 'body.0',
                    'teacher_layer': 'body.1',
                    'loss_weight': 0.1
                }, {
                    'type': 'CRDLoss',
                    'student_layer': 'conv_first',
                    'teacher_layer': 'conv_first',
                    'loss_weight': 0.01,
                    'feat_dim': 8,
                    'nce_k': 5
                }]
            }),
        'augkd':
        tiny_options(
            lmdbs, 'ref_augkd', 'AugKDModel', msrresnet_s, msrresnet_t, teachers['msrresnet'], {
                **kd, 'feature_losses': [{
                    'type': 'FAKDLoss',
                    'student_layer': 'body.0',
                    'teacher_layer': 'body.1',
                    'loss_weight': 0.1
                }]
            }),
        'csd':
        tiny_options(lmdbs, 'ref_csd', 'CSDModel', {
            'type': 'SlimEDSR',
            'num_in_ch': 3,
            'num_out_ch': 3,
            'num_feat': 16,
            'num_block': 2,
            'upscale': 2
        }, None, None, {
            'csd': {
                'width_mult': 0.5
            },
            'contrastive_opt': {
                'type': 'CSDContrastiveLoss',
                'num_negatives': 3,
                'vgg_weights': 'random'
            }
        }),
        'memsr':
        tiny_options(lmdbs, 'ref_memsr', 'MemSRModel', {
            'type': 'PlainSR',
            'widths': [8] * 6,
            'upscale': 2,
            'one_pad': True
        }, dict(TEACHERS['pixelshuffle_edsr']), teachers['pixelshuffle_edsr'], {
            **kd, 'memsr': {
                'lambda': 0.3
            }
        }),
        'crosskd':
        tiny_options(lmdbs, 'ref_crosskd', 'CrossKDModel', {
            'type': 'EDSR',
            'num_in_ch': 3,
            'num_out_ch': 3,
            'num_feat': 8,
            'num_block': 1,
            'upscale': 2
        }, dict(TEACHERS['edsr']), teachers['edsr'], {
            **kd, 'crosskd': {
                'student_layer': 'upsample',
                'teacher_layer': 'upsample'
            },
            'crosskd_opt': {
                'type': 'CrossKDLoss',
                'loss_weight': 0.7
            }
        }),
    }


def digests(model) -> dict:
    """``weights``: sha256 of the student's tensors' bytes in state_dict order; ``losses``: ``repr`` of every logged
    loss as a float."""
    net = model.net_g.module if hasattr(model.net_g, 'module') else model.net_g
    h = hashlib.sha256()
    for value in net.state_dict().values():
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return {'weights': h.hexdigest(), 'losses': {key: repr(float(value)) for key, value in model.log_dict.items()}}


def main() -> None:
    torch.set_num_threads(THREADS)
    from basicsr.archs import build_network
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.models import build_model
    from basicsr.utils import make_exp_dirs
    from basicsr.utils.options import parse_options
    workdir, lmdbs = os.path.abspath(sys.argv[1]), json.loads(open(sys.argv[2]).read())
    os.chdir(workdir)
    teachers = {}
    for key, net_opt in TEACHERS.items():
        torch.manual_seed(1)
        teachers[key] = os.path.abspath(f'{key}.pth')
        torch.save({'params': build_network(dict(net_opt)).state_dict()}, teachers[key])
    results = {}
    for method, opt in runs(lmdbs, teachers).items():
        path = f'{method}.yml'
        with open(path, 'w') as f:
            yaml.safe_dump(opt, f, sort_keys=False)
        sys.argv = ['train', '-opt', path]
        parsed, _ = parse_options(workdir, is_train=True)
        parsed['root_path'] = workdir
        make_exp_dirs(parsed)
        model = build_model(parsed)
        dataset_opt = parsed['datasets']['train']
        loader = build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=0, dist=False, sampler=None, seed=0)
        for step, batch in zip(range(1, STEPS + 1), loader):
            model.feed_data(batch)
            model.optimize_parameters(step)
        results[method] = digests(model)
    print(json.dumps(results))


if __name__ == '__main__':
    main()
