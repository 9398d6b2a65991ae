"""Per-image PSNR and SSIM for float N x C x H x W images, to score reconstructions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

PSNR_CAP_DB = 100.0
"""PSNR reported for identical images (and the ceiling for all): keeps means finite."""


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"images must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.ndim != 4:
        raise ValueError(f"images must be N x C x H x W, got shape {tuple(x.shape)}")


def _out_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def psnr_db(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB (N), from the MSE over all channels and pixels; capped at 100 dB.

    Identical images would give +inf, which poisons means, so every value is capped at
    ``PSNR_CAP_DB`` (100 dB, an MSE of 1e-10 for ``data_range=1``). Computed in float64.
    """
    _check_pair(x, y)
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    mse = (x.detach().double() - y.detach().double()).pow(2).flatten(1).mean(1)
    psnr = 10.0 * torch.log10(data_range**2 / mse)  # mse == 0 gives +inf, capped below
    return psnr.clamp(max=PSNR_CAP_DB).to(_out_dtype(x))


def gaussian_window(window_size: int, sigma: float, *, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian taps centred on the window (what scipy's gaussian_filter uses)."""
    t = torch.arange(window_size, dtype=dtype, device=device) - (window_size - 1) / 2
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Per-image mean SSIM (N): Wang et al. 2004, Gaussian window, per channel then averaged.

    Local statistics use a separable Gaussian window over the *valid* region only (no
    padding): the SSIM map is (H - window_size + 1) x (W - window_size + 1) per channel and
    is averaged, then channels are averaged. Variances and covariance use population
    (1/N-weighted) moments, K1 = 0.01, K2 = 0.03. With the defaults this equals skimage's
    ``structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=0)`` per image: skimage filters
    with an 11-tap Gaussian (truncate 3.5) and crops (win_size - 1) // 2 border pixels before
    averaging, which is exactly the valid region. For other ``sigma`` the match holds when
    ``window_size == 2 * int(3.5 * sigma + 0.5) + 1``. Computed in float64.
    """
    _check_pair(x, y)
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size must be a positive odd integer, got {window_size}")
    n, c, h, w = x.shape
    if window_size > min(h, w):
        raise ValueError(f"window_size {window_size} exceeds the image size {h} x {w}")
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    xd = x.detach().double().reshape(n * c, 1, h, w)
    yd = y.detach().double().reshape(n * c, 1, h, w)
    g = gaussian_window(window_size, sigma, device=x.device)
    stack = torch.cat([xd, yd, xd * xd, yd * yd, xd * yd], dim=0)
    filtered = F.conv2d(stack, g.view(1, 1, 1, -1))
    filtered = F.conv2d(filtered, g.view(1, 1, -1, 1))
    mu_x, mu_y, e_xx, e_yy, e_xy = filtered.chunk(5, dim=0)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    per_channel = (num / den).flatten(1).mean(1).view(n, c)
    return per_channel.mean(1).to(_out_dtype(x))


__all__ = ["PSNR_CAP_DB", "gaussian_window", "psnr_db", "ssim"]
