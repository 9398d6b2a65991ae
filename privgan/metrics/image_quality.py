"""Per-image PSNR and SSIM (torchmetrics) for float N x C x H x W images, to score reconstructions."""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

PSNR_CAP_DB = 100.0
"""PSNR reported for identical images (and the ceiling for all): keeps means finite."""


def _check_pair(x: torch.Tensor, y: torch.Tensor, data_range: float) -> None:
    if x.shape != y.shape:
        raise ValueError(f"images must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.ndim != 4:
        raise ValueError(f"images must be N x C x H x W, got shape {tuple(x.shape)}")
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")


def _out_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def psnr_db(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB (N), from the MSE over all channels and pixels; capped at 100 dB.

    torchmetrics' ``peak_signal_noise_ratio`` over dims (1, 2, 3) in float64. Identical images
    would give +inf, which poisons means, so every value is capped at ``PSNR_CAP_DB`` (100 dB,
    an MSE of 1e-10 for ``data_range=1``).
    """
    _check_pair(x, y, data_range)
    psnr = peak_signal_noise_ratio(x.detach().double(), y.detach().double(), data_range=data_range, reduction="none", dim=(1, 2, 3))
    return psnr.clamp(max=PSNR_CAP_DB).to(_out_dtype(x))


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Per-image mean SSIM (N): Wang et al. 2004, Gaussian window, over the *valid* region, in float64.

    torchmetrics' ``structural_similarity_index_measure`` (population moments, K1 = 0.01,
    K2 = 0.03) gives the SSIM map; it is averaged over the (H - window_size + 1) x
    (W - window_size + 1) pixels whose window lies inside the image, then over channels.
    With the defaults this equals skimage's ``structural_similarity(x, y,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1,
    channel_axis=0)`` per image. (torchmetrics alone averages the whole map, border pixels
    included from reflect-padded windows: a different, usually higher, number on small images.)

    torchmetrics sizes a Gaussian window from sigma as skimage does, ``2 * int(3.5 * sigma +
    0.5) + 1`` taps (11 for 1.5). When ``window_size`` differs (e.g. shrunk to fit a small
    image), sigma becomes ``(window_size // 2 + 0.25) / 3.5``, whose window is ``window_size``.
    """
    _check_pair(x, y, data_range)
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size must be a positive odd integer, got {window_size}")
    h, w = x.shape[-2:]
    if window_size > min(h, w):
        raise ValueError(f"window_size {window_size} exceeds the image size {h} x {w}")
    half = window_size // 2
    if 2 * int(3.5 * sigma + 0.5) + 1 != window_size:
        sigma = (half + 0.25) / 3.5
    _, full = structural_similarity_index_measure(
        x.detach().double(), y.detach().double(), gaussian_kernel=True, sigma=sigma,
        data_range=data_range, reduction="none", return_full_image=True,
    )
    return full[..., half : h - half, half : w - half].flatten(1).mean(1).to(_out_dtype(x))


__all__ = ["PSNR_CAP_DB", "psnr_db", "ssim"]
