"""Noise (and optional per-sample L2 clipping) on the activations sent across a split."""

from __future__ import annotations

import math

import torch
from torch import nn


class ActivationNoise(nn.Module):
    """Clip each sample's activation to L2 norm ``clip_norm`` (if set), then add Gaussian noise.

    With clipping, the per-coordinate std is ``sigma * clip_norm / sqrt(d)``: the noise's norm is
    about ``sigma`` times the largest possible signal norm, so sigma is a noise-to-signal ratio
    that means the same at every split. Without clipping, the std is ``sigma`` times each
    sample's own activation RMS (relative noise). Noise is applied in training and inference:
    what the server receives is always noised. ``sigma=0`` and no clip is the identity.
    """

    def __init__(self, *, sigma: float = 0.0, clip_norm: float | None = None) -> None:
        super().__init__()
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"activation noise sigma (recipe key model.init_args.activation_noise) must be a finite number >= 0, "
                             f"got {sigma!r}")
        if clip_norm is not None and (isinstance(clip_norm, bool) or not isinstance(clip_norm, (int, float))
                                      or not math.isfinite(clip_norm) or clip_norm <= 0):
            raise ValueError(f"clip_norm (recipe key model.init_args.clip_norm) must be a finite number > 0, or null for no "
                             f"clipping, got {clip_norm!r}")
        self.sigma = float(sigma)
        self.clip_norm = clip_norm

    def clip(self, z: torch.Tensor) -> torch.Tensor:
        """Per-sample L2 clipping (deterministic: part of what the device computes)."""
        if self.clip_norm is None:
            return z
        norms = z.flatten(1).norm(dim=1).clamp_min(1e-12)
        scale = (self.clip_norm / norms).clamp(max=1.0)
        return z * scale.view(-1, *([1] * (z.dim() - 1)))

    def noise_std(self, z: torch.Tensor) -> torch.Tensor:
        """Per-sample noise standard deviation (shape N x 1 x ...)."""
        shape = (-1, *([1] * (z.dim() - 1)))
        if self.clip_norm is not None:
            d = z[0].numel()
            return torch.full((z.shape[0],), self.sigma * self.clip_norm / d**0.5, device=z.device).view(shape)
        rms = z.detach().flatten(1).pow(2).mean(1).sqrt()
        return (self.sigma * rms).view(shape)

    def add_noise(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Add the Gaussian noise (the random part, applied to what is transmitted)."""
        if self.sigma == 0:
            return z
        eps = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        return z + eps * self.noise_std(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.add_noise(self.clip(z))

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, clip_norm={self.clip_norm}"
