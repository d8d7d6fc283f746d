"""The CPU-sized real-world data of options/train/RealWorldKD/*_cpu.yml (``python scripts/realworld_demo_data.py``):

- ``HR/`` and ``meta_info.txt``: the training photos of the demo (scikit-image's bundled photos,
  :data:`kdplugins.experiments.demo.TRAIN_PHOTOS`) in Real-ESRGAN's disk layout for ``RealESRGANDataset``;
- ``val/HR`` and ``val/LR``: fixed degraded validation pairs, made once with a seed, so that every run is scored on
  the same inputs. Each validation photo becomes a 400x400 HR (``RealESRGANDataset``'s crop / pad) and its LR is
  synthesised by basicsr's own ``RealESRNetModel.feed_data`` with the degradation settings of the option file
  (the same code and settings the training batches come from), one image at a time, seeded per image.
"""
import cv2
import numpy as np
import os
import torch
import yaml
from basicsr.data.realesrgan_dataset import RealESRGANDataset
from basicsr.models.realesrnet_model import RealESRNetModel
from basicsr.utils import DiffJPEG, USMSharp
from types import SimpleNamespace
from typing import Sequence

from kdplugins.experiments.demo import TRAIN_PHOTOS
from kdplugins.models.realworld_kd_model import ContiguousOutput, seeded_global_streams

OPTIONS = os.path.join('options', 'train', 'RealWorldKD', 'train_RealESRNetKD_RRDBNet_SRVGGNetCompact_x4_cpu.yml')
VAL_PHOTOS = ('chelsea.png', 'camera.png', 'hubble_deep_field.jpg')  # others of scikit-image's bundled photos
VAL_SIZE = 400  # RealESRGANDataset's fixed crop / pad size


def write_photos(names: Sequence[str], folder: str) -> None:
    import skimage.data
    photos = os.path.dirname(skimage.data.__file__)
    os.makedirs(folder, exist_ok=True)
    for name in names:
        image = cv2.imread(os.path.join(photos, name), cv2.IMREAD_COLOR)
        cv2.imwrite(os.path.join(folder, os.path.splitext(name)[0] + '.png'), image)


def degraded_pairs(opt: dict, folder: str, out: str, seed: int) -> None:
    """``val/HR`` and ``val/LR`` from the photos of ``folder``: one draw of the degradations of ``opt`` per image."""
    dataset_opt = dict(opt['datasets']['train'], dataroot_gt=folder, meta_info=os.path.join(out, 'val_meta_info.txt'))
    names = sorted(os.listdir(folder))
    with open(dataset_opt['meta_info'], 'w') as f:
        f.writelines(f'{name}\n' for name in names)
    synth_opt = dict(opt, gt_usm=False, gt_size=VAL_SIZE)
    synth = SimpleNamespace(
        opt=synth_opt,
        device=torch.device('cpu'),
        is_train=True,
        usm_sharpener=USMSharp(),
        jpeger=ContiguousOutput(DiffJPEG(differentiable=False)),
        queue_size=len(names) + 1)
    # a pool that never fills: each image keeps its own degradation (basicsr's pool would swap images)
    synth.queue_lr = torch.zeros(synth.queue_size, 3, VAL_SIZE // opt['scale'], VAL_SIZE // opt['scale'])
    synth.queue_gt = torch.zeros(synth.queue_size, 3, VAL_SIZE, VAL_SIZE)
    synth.queue_ptr = 0
    synth._dequeue_and_enqueue = lambda: RealESRNetModel._dequeue_and_enqueue(synth)
    dataset = RealESRGANDataset(dataset_opt)
    for folder_name in ('HR', 'LR'):
        os.makedirs(os.path.join(out, 'val', folder_name), exist_ok=True)
    for index, name in enumerate(names):
        # a stream of its own (spawn key 1): never the seed of a training batch
        image_seed = int(np.random.SeedSequence([seed, index], spawn_key=(1, )).generate_state(1)[0])
        with seeded_global_streams(image_seed, torch.device('cpu')):
            sample = dataset[index]
            RealESRNetModel.feed_data(synth, {k: v[None] for k, v in sample.items() if k != 'gt_path'})
        for folder_name, image in (('HR', synth.gt), ('LR', synth.lq)):
            array = (image[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
            cv2.imwrite(os.path.join(out, 'val', folder_name, name), cv2.cvtColor(array, cv2.COLOR_RGB2BGR))


def write_realworld_demo(out: str = os.path.join('datasets', 'realworld_demo'), options: str = OPTIONS,
                         seed: int = 0) -> None:
    """The training photos with their meta_info, and the fixed degraded validation pairs (see the module)."""
    with open(options) as f:
        opt = yaml.safe_load(f)
    write_photos(TRAIN_PHOTOS, os.path.join(out, 'HR'))
    with open(os.path.join(out, 'meta_info.txt'), 'w') as f:
        f.writelines(f'{os.path.splitext(name)[0]}.png\n' for name in TRAIN_PHOTOS)
    write_photos(VAL_PHOTOS, os.path.join(out, 'val_photos'))
    degraded_pairs(opt, os.path.join(out, 'val_photos'), out, seed)
    print(f'{len(TRAIN_PHOTOS)} training photos in {out}/HR (meta_info.txt), {len(VAL_PHOTOS)} degraded validation '
          f'pairs in {out}/val (seed {seed})')
