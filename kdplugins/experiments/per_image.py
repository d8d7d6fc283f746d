"""Per-image PSNR-Y of a trained run on its validation sets, for the per-image paired comparison of issue 17.

basicsr's validation logs only each set's mean; :func:`per_image_psnr` evaluates the run's saved student
(``network_g`` of its option file, the checkpoint's ``params``) on every image of every validation set exactly as
basicsr's ``SRModel`` validates (forward on the whole LR image, ``tensor2img``, ``calculate_psnr`` with the option
file's ``val.metrics.psnr`` settings), so the mean over a set's images is the PSNR the run logged for that set.
:func:`cached_per_image_psnr` keeps the result beside the checkpoint (``per_image_psnr.json``), keyed by the
checkpoint's size and modification time.
"""
import json
import os
import torch
from typing import Dict

IMAGE_KEY = 'lq_path'


def per_image_psnr(options: dict, checkpoint: str, device: str = 'cpu') -> Dict[str, Dict[str, float]]:
    """``{validation set name: {image name: PSNR-Y}}`` of ``network_g`` with ``checkpoint``'s ``params``."""
    from basicsr.archs import build_network
    from basicsr.data import build_dataset
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img

    from kdplugins.utils.checkpoint import load_state_dict_checked, read_state_dict
    from kdplugins.utils.padding import forward_padded
    net = build_network(dict(options['network_g'])).to(device).eval()
    load_state_dict_checked(net, read_state_dict(checkpoint, 'params', 'module.', checkpoint), what=checkpoint)
    metric = {k: v for k, v in options['val']['metrics']['psnr'].items() if k != 'type'}
    scale = int(options['scale'])
    results = {}
    for phase, dataset_opt in options['datasets'].items():
        if phase.split('_')[0] != 'val':
            continue
        dataset = build_dataset(dict(dataset_opt, phase='val', scale=scale))
        scores = {}
        for index in range(len(dataset)):
            sample = dataset[index]
            with torch.no_grad():
                output = forward_padded(net, sample['lq'][None].to(device), scale).cpu()
            name = os.path.splitext(os.path.basename(sample[IMAGE_KEY]))[0]
            scores[name] = float(calculate_psnr(tensor2img(output), tensor2img(sample['gt'][None]), **metric))
        results[dataset_opt['name']] = scores
    return results


def cached_per_image_psnr(options: dict, checkpoint: str) -> Dict[str, Dict[str, float]]:
    """:func:`per_image_psnr`, read from / written to ``per_image_psnr.json`` beside ``checkpoint``."""
    cache = os.path.join(os.path.dirname(checkpoint), 'per_image_psnr.json')
    stat = os.stat(checkpoint)
    key = f'{os.path.basename(checkpoint)} {stat.st_size} {stat.st_mtime_ns}'
    if os.path.isfile(cache):
        with open(cache) as f:
            stored = json.load(f)
        if stored.get('checkpoint') == key:
            return stored['psnr']
    results = per_image_psnr(options, checkpoint)
    with open(cache + '.tmp', 'w') as f:
        json.dump({'checkpoint': key, 'psnr': results}, f, indent=1)
    os.replace(cache + '.tmp', cache)
    return results
