"""Train KD (+FitNet, CRD), AugKD (+FAKD), CSD and MemSR for three steps each in this process and print a digest of
every model's student weights and logged losses, as JSON.

Run by tests/test_architecture.py twice, with today's package and with the package of the commit before the
distillation base was introduced (on ``PYTHONPATH``), to show that the refactor changed no result. It uses only what
both versions share: option files, basicsr's ``parse_options`` / ``build_model`` / dataloader, ``feed_data``,
``optimize_parameters``, ``net_g`` and ``log_dict``.

    python tests/run_refactor_reference.py WORKDIR LMDBS_JSON
"""
import hashlib
import json
import os
import sys
import torch
import yaml

import kdplugins  # noqa: F401


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
            'scheduler': {
                'type': 'MultiStepLR',
                'milestones': [2],
                'gamma': 0.5
            },
            'total_iter': 3,
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


def runs(lmdbs: dict, teachers: dict) -> dict:
    msrresnet_t = {'type': 'MSRResNet', 'num_feat': 16, 'num_block': 2, 'upscale': 2}
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
        }, {
            'type': 'PixelShuffleEDSR',
            'num_feat': 8,
            'num_block': 2,
            'upscale': 2
        }, teachers['pixelshuffle_edsr'], {
            **kd, 'memsr': {
                'lambda': 0.3
            }
        }),
    }


def digest(model) -> str:
    net = model.net_g.module if hasattr(model.net_g, 'module') else model.net_g
    h = hashlib.sha256()
    for key, value in net.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    for key, value in sorted(model.log_dict.items()):
        h.update(f'{key}={float(value)!r}'.encode())
    return h.hexdigest()


def main() -> None:
    from basicsr.archs import build_network
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.models import build_model
    from basicsr.utils import make_exp_dirs
    from basicsr.utils.options import parse_options
    workdir, lmdbs = sys.argv[1], json.loads(open(sys.argv[2]).read())
    os.chdir(workdir)
    teachers = {}
    for key, net_opt in (('msrresnet', {
            'type': 'MSRResNet',
            'num_feat': 16,
            'num_block': 2,
            'upscale': 2
    }), ('pixelshuffle_edsr', {
            'type': 'PixelShuffleEDSR',
            'num_feat': 8,
            'num_block': 2,
            'upscale': 2
    })):
        torch.manual_seed(1)
        teachers[key] = os.path.abspath(f'{key}.pth')
        torch.save({'params': build_network(dict(net_opt)).state_dict()}, teachers[key])
    digests = {}
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
        for step, batch in zip(range(1, 4), loader):
            model.update_learning_rate(step, warmup_iter=-1)
            model.feed_data(batch)
            model.optimize_parameters(step)
        digests[method] = digest(model)
    print(json.dumps(digests))


if __name__ == '__main__':
    main()
