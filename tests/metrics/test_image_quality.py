"""PSNR and SSIM against hand-computed values and against skimage's algorithm rebuilt with scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from privgan.metrics.image_quality import PSNR_CAP_DB, psnr_db, ssim

C1, C2 = 0.01**2, 0.03**2


def _images(n: int = 2, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_psnr_of_constant_offset_is_exact() -> None:
    x = _images() * 0.8
    assert torch.allclose(psnr_db(x, x + 0.1), torch.full((2,), 20.0, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(psnr_db(x, x - 0.01), torch.full((2,), 40.0, dtype=torch.float64), atol=1e-9)
    # data range 2 adds 20 log10(2) dB
    expect = 20.0 + 20 * math.log10(2.0)
    assert torch.allclose(psnr_db(x, x + 0.1, data_range=2.0), torch.full((2,), expect, dtype=torch.float64))


def test_psnr_is_per_image_and_capped() -> None:
    x = _images(3).float()
    y = x.clone()
    y[1] += 0.1
    y[2, 0] += 0.3  # one channel of three: MSE = 0.09 / 3 = 0.03
    p = psnr_db(x, y)
    assert p.shape == (3,) and p.dtype == torch.float32
    assert p[0].item() == PSNR_CAP_DB == 100.0
    assert p[1].item() == pytest.approx(20.0, abs=1e-4)
    assert p[2].item() == pytest.approx(-10 * math.log10(0.03), abs=1e-4)
    assert torch.isfinite(p).all()


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        psnr_db(_images(2), _images(3))
    with pytest.raises(ValueError):
        ssim(_images(2)[0], _images(2)[0])


def test_ssim_identical_is_one_and_symmetric() -> None:
    x, y = _images(seed=1), _images(seed=2)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(ssim(x, y), ssim(y, x), atol=1e-12)
    assert (ssim(x, y) < 0.1).all()  # independent noise


def test_ssim_of_negated_image_is_low() -> None:
    x = _images(seed=3)
    s = ssim(x, 1.0 - x)
    # same local means (~0.5), perfectly anti-correlated structure: SSIM close to -1
    assert (s < -0.5).all()


def test_ssim_constant_images_closed_form() -> None:
    a, b = 0.2, 0.6
    x = torch.full((1, 3, 16, 16), a, dtype=torch.float64)
    y = torch.full((1, 3, 16, 16), b, dtype=torch.float64)
    # zero variances: contrast-structure term is C2 / C2 = 1, luminance term is all that is left
    expect = (2 * a * b + C1) / (a * a + b * b + C1)
    assert ssim(x, y).item() == pytest.approx(expect, rel=1e-12)


def test_ssim_hand_computed_single_window() -> None:
    # 3 x 3 images and a 3-tap window: the valid region is one pixel, SSIM is one window's value.
    # torchmetrics sizes the window from sigma (2 * int(3.5 sigma + 0.5) + 1 taps, skimage's rule),
    # so a 3-tap window takes a sigma below 3/7: 0.4 (the old hand check used 1.0).
    x = np.array([[0.1, 0.5, 0.9], [0.3, 0.7, 0.2], [0.8, 0.4, 0.6]])
    y = np.array([[0.2, 0.4, 0.8], [0.3, 0.9, 0.1], [0.6, 0.5, 0.7]])
    sigma = 0.4
    g = np.exp(-0.5 * np.array([-1.0, 0.0, 1.0]) ** 2 / sigma**2)
    wgt = np.outer(g, g) / np.outer(g, g).sum()
    mx, my = (wgt * x).sum(), (wgt * y).sum()
    vx, vy = (wgt * (x - mx) ** 2).sum(), (wgt * (y - my) ** 2).sum()
    cxy = (wgt * (x - mx) * (y - my)).sum()
    expect = (2 * mx * my + C1) * (2 * cxy + C2) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
    tx = torch.from_numpy(x).view(1, 1, 3, 3)
    ty = torch.from_numpy(y).view(1, 1, 3, 3)
    assert ssim(tx, ty, window_size=3, sigma=sigma).item() == pytest.approx(expect, rel=1e-10)


def _skimage_style_ssim(x: np.ndarray, y: np.ndarray, sigma: float = 1.5) -> float:
    """skimage.metrics.structural_similarity(gaussian_weights=True, use_sample_covariance=False,
    data_range=1, channel_axis=0) re-done step by step: reflect-filtered stats, crop, mean."""
    truncate = 3.5
    win = 2 * int(truncate * sigma + 0.5) + 1
    pad = (win - 1) // 2
    per_channel = []
    for xc, yc in zip(x, y):
        f = lambda im: ndimage.gaussian_filter(im, sigma=sigma, truncate=truncate, mode="reflect")  # noqa: E731
        ux, uy = f(xc), f(yc)
        vx, vy, vxy = f(xc * xc) - ux * ux, f(yc * yc) - uy * uy, f(xc * yc) - ux * uy
        s = ((2 * ux * uy + C1) * (2 * vxy + C2)) / ((ux**2 + uy**2 + C1) * (vx + vy + C2))
        per_channel.append(s[pad:-pad, pad:-pad].mean())
    return float(np.mean(per_channel))


def test_ssim_matches_skimage_algorithm() -> None:
    x = _images(3, 3, 32, 24, seed=4)
    y = (x + 0.15 * _images(3, 3, 32, 24, seed=5) - 0.05).clamp(0, 1)
    y[1] = x[1].flip(-1)
    ours = ssim(x, y)
    for i in range(3):
        ref = _skimage_style_ssim(x[i].numpy(), y[i].numpy())
        assert ours[i].item() == pytest.approx(ref, abs=1e-10)
    # float32 inputs agree to float32 precision and come back as float32
    s32 = ssim(x.float(), y.float())
    assert s32.dtype == torch.float32 and torch.allclose(s32.double(), ours, atol=1e-5)


def test_ssim_window_validation() -> None:
    x = _images(1, 3, 8, 8)
    with pytest.raises(ValueError):
        ssim(x, x)  # 11 > 8
    with pytest.raises(ValueError):
        ssim(x, x, window_size=4)
    assert ssim(x, x, window_size=7).item() == pytest.approx(1.0)


def test_ssim_small_window_shrinks_sigma_to_fit() -> None:
    """A window smaller than sigma's (images under 11 px) uses sigma = (window // 2 + 0.25) / 3.5."""
    x = _images(2, 3, 8, 9, seed=6)
    y = (x + 0.2 * _images(2, 3, 8, 9, seed=7)).clamp(0, 1)
    ours = ssim(x, y, window_size=7)
    assert torch.allclose(ours, ssim(x, y, window_size=7, sigma=3.25 / 3.5), atol=0)
    for i in range(2):
        assert ours[i].item() == pytest.approx(_skimage_style_ssim(x[i].numpy(), y[i].numpy(), sigma=3.25 / 3.5), abs=1e-10)


def test_ssim_is_over_the_valid_region_not_torchmetrics_full_map() -> None:
    """torchmetrics' own mean includes reflect-padded borders; ours crops them (as skimage does)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    x = _images(2, 3, 16, 16, seed=8)
    y = (x + 0.3 * _images(2, 3, 16, 16, seed=9)).clamp(0, 1)
    full = structural_similarity_index_measure(x, y, sigma=1.5, data_range=1.0, reduction="none")
    assert not torch.allclose(ssim(x, y), full, atol=1e-3)
