"""Activation clipping and noise at the split."""

import pytest
import torch

from privgan.defences.activation_noise import ActivationNoise


def test_identity_when_off():
    z = torch.randn(4, 8, 5, 5)
    assert torch.equal(ActivationNoise()(z), z)


def test_clip_bounds_norm_and_keeps_small():
    d = ActivationNoise(clip_norm=1.0)
    z = torch.cat([torch.randn(3, 10) * 10, torch.full((1, 10), 0.01)])
    c = d.clip(z)
    assert torch.allclose(c[:3].norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(c[3], z[3])


def test_clipped_noise_norm_is_sigma_times_clip():
    d = ActivationNoise(sigma=2.0, clip_norm=3.0)
    z = torch.zeros(64, 16, 8, 8)
    noise = d(z) - z
    assert noise.flatten(1).norm(dim=1).mean().item() == pytest.approx(6.0, rel=0.05)


def test_relative_noise_scales_with_activation():
    d = ActivationNoise(sigma=0.5)
    z = torch.randn(256, 100)
    z[128:] *= 10
    noise = d(z) - z
    small, big = noise[:128].std().item(), noise[128:].std().item()
    assert small == pytest.approx(0.5, rel=0.1) and big == pytest.approx(5.0, rel=0.1)


def test_seeded_noise_repeats():
    d = ActivationNoise(sigma=1.0)
    z = torch.randn(2, 5)
    a = d.add_noise(z, generator=torch.Generator().manual_seed(0))
    b = d.add_noise(z, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_bad_settings():
    with pytest.raises(ValueError, match="sigma"):
        ActivationNoise(sigma=-1)
    with pytest.raises(ValueError, match="clip_norm"):
        ActivationNoise(clip_norm=0)
