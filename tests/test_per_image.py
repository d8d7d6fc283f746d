"""kdplugins.experiments.per_image: per-image PSNR-Y of a saved student, whose mean per set is what basicsr's own
validation computes for that set, and its cache beside the checkpoint."""
import copy
import json
import torch
from basicsr.data import build_dataloader, build_dataset
from conftest import build, kd_options, save_teacher

from kdplugins.experiments.per_image import cached_per_image_psnr, per_image_psnr


def test_mean_of_per_image_psnr_is_basicsrs_validation_psnr(tmp_path, monkeypatch, tiny_lmdbs):
    opt = kd_options(tiny_lmdbs, save_teacher(tmp_path / 'teacher.pth'), name='per_image')
    opt['model_type'] = 'SRModel'
    del opt['network_t'], opt['train']['kd_opt'], opt['train']['teacher_check']
    torch.manual_seed(3)
    model, parsed = build(tmp_path, monkeypatch, opt)
    checkpoint = tmp_path / 'net_g.pth'
    torch.save({'params': model.net_g.state_dict()}, checkpoint)
    scores = per_image_psnr(copy.deepcopy(parsed), str(checkpoint))
    assert list(scores) == ['tiny_val'] and sorted(scores['tiny_val']) == ['chelsea', 'ihc']
    val_opt = parsed['datasets']['val']
    loader = build_dataloader(build_dataset(val_opt), val_opt, num_gpu=0, dist=False, sampler=None)
    model.validation(loader, current_iter=1, tb_logger=None, save_img=False)
    per_image = list(scores['tiny_val'].values())
    assert abs(sum(per_image) / len(per_image) - model.metric_results['psnr']) < 1e-9
    assert per_image[0] != per_image[1]

    cached = cached_per_image_psnr(copy.deepcopy(parsed), str(checkpoint))
    assert cached == scores
    stored = json.loads((tmp_path / 'per_image_psnr.json').read_text())
    stored['psnr']['tiny_val']['chelsea'] = -1.0  # a cache for this very checkpoint is read, not recomputed
    (tmp_path / 'per_image_psnr.json').write_text(json.dumps(stored))
    assert cached_per_image_psnr(copy.deepcopy(parsed), str(checkpoint))['tiny_val']['chelsea'] == -1.0
    torch.save({'params': model.net_g.state_dict()}, checkpoint)  # a new checkpoint: recomputed
    assert cached_per_image_psnr(copy.deepcopy(parsed), str(checkpoint)) == scores
