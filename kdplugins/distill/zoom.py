"""Auxiliary distillation samples of AugKD (Sec. 3.3): zoom-in crops of the HR patch, zoom-out of the LR patch.

Both are made batched on the training device from the (LR, HR) pair the dataset already returns, so the data
pipeline is unchanged.
"""
import torch

from kdplugins.utils.matlab_resize import matlab_resize


def zoom_out(lq: torch.Tensor, scale: int) -> torch.Tensor:
    """``I_LR_zo``: the LR batch downscaled by ``scale`` with MATLAB-style bicubic, the degradation that made the
    dataset's LR from its HR (``basicsr.utils.matlab_functions.imresize`` applied image by image)."""
    return matlab_resize(lq, 1.0 / scale)


def crop_origins(batch: int,
                 n_crops: int,
                 hr_size: tuple,
                 crop_size: tuple,
                 generator: torch.Generator,
                 non_overlapping: bool = False) -> torch.Tensor:
    """Top-left corners ``(batch, n_crops, 2)`` of random ``crop_size`` crops inside an ``hr_size`` patch.

    Uniform over all positions, drawn independently; with ``non_overlapping`` the HR patch is cut into a grid of
    ``crop_size`` cells and each sample gets ``n_crops`` distinct cells.
    """
    device = generator.device
    (hr_h, hr_w), (crop_h, crop_w) = hr_size, crop_size
    if not non_overlapping:
        tops = torch.randint(0, hr_h - crop_h + 1, (batch, n_crops), generator=generator, device=device)
        lefts = torch.randint(0, hr_w - crop_w + 1, (batch, n_crops), generator=generator, device=device)
        return torch.stack([tops, lefts], dim=-1)
    cells_h, cells_w = hr_h // crop_h, hr_w // crop_w
    if n_crops > cells_h * cells_w:
        raise ValueError(f'n_zoom_in {n_crops} non-overlapping crops of {crop_h}x{crop_w} do not fit in a '
                         f'{hr_h}x{hr_w} HR patch ({cells_h * cells_w} cells): lower n_zoom_in to at most scale^2 or '
                         'set zoom_in_non_overlapping: false.')
    cells = torch.rand(batch, cells_h * cells_w, generator=generator, device=device).argsort(dim=1)[:, :n_crops]
    return torch.stack([cells // cells_w * crop_h, cells % cells_w * crop_w], dim=-1)


def zoom_in(gt: torch.Tensor, origins: torch.Tensor, crop_size: tuple) -> torch.Tensor:
    """``I_LR_zi``: crops of the HR batch ``gt`` at ``origins`` (from :func:`crop_origins`), crop-major:
    ``(n_crops * batch, C, crop_h, crop_w)``, the ``k``-th block of ``batch`` rows holding every sample's crop ``k``."""
    batch, n_crops = origins.shape[:2]
    crop_h, crop_w = crop_size
    rows = origins[..., 0, None] + torch.arange(crop_h, device=gt.device)  # (batch, n_crops, crop_h)
    cols = origins[..., 1, None] + torch.arange(crop_w, device=gt.device)  # (batch, n_crops, crop_w)
    samples = torch.arange(batch, device=gt.device).view(batch, 1, 1, 1)
    crops = gt.permute(0, 2, 3, 1)[samples, rows[..., :, None], cols[..., None, :]]  # (batch, n, h, w, C)
    return crops.permute(1, 0, 4, 2, 3).reshape(n_crops * batch, gt.shape[1], crop_h, crop_w)
