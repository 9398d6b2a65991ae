"""DCGAN-style generator and discriminator for 32 or 64 px faces, with a DP-compatible discriminator."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

#: Image sizes the networks are built for (4 x 4 base, one doubling per block).
IMAGE_SIZES = (32, 64)
#: Generator normalisations: BatchNorm is the steady DCGAN choice; G never sees real data under DP.
GENERATOR_NORMS = ("batch", "group", "none")
#: Discriminator normalisations: spectral norm when not private; Opacus accepts only group / none.
DISCRIMINATOR_NORMS = ("spectral", "group", "none")


def _check_size(image_size: int) -> int:
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {IMAGE_SIZES}, got {image_size}")
    return int(math.log2(image_size // 4))


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups that divide ``channels`` (per-sample, so Opacus can clip it)."""
    return nn.GroupNorm(math.gcd(channels, 8), channels)


class Generator(nn.Module):
    """z (N x latent_dim) -> images N x 3 x S x S in [-1, 1] (tanh), S = image_size.

    Channels start at ``width * 2**(blocks - 1)`` on a 4 x 4 grid and halve at every
    transposed-convolution doubling; the last one maps straight to RGB (DCGAN).
    """

    def __init__(self, *, image_size: int = 32, latent_dim: int = 128, width: int = 64, norm: str = "batch") -> None:
        super().__init__()
        if norm not in GENERATOR_NORMS:
            raise ValueError(f"generator norm must be one of {GENERATOR_NORMS}, got {norm!r}")
        if latent_dim < 1 or width < 1:
            raise ValueError(f"latent_dim and width must be >= 1, got {latent_dim} and {width}")
        blocks = _check_size(image_size)
        self.image_size, self.latent_dim, self.width, self.norm = image_size, latent_dim, width, norm
        self.base_channels = width * 2 ** (blocks - 1)

        def norm_layer(c: int) -> nn.Module:
            return {"batch": lambda: nn.BatchNorm2d(c), "group": lambda: _group_norm(c), "none": nn.Identity}[norm]()

        self.fc = nn.Linear(latent_dim, self.base_channels * 16)
        layers: list[nn.Module] = [norm_layer(self.base_channels), nn.ReLU(inplace=True)]
        c = self.base_channels
        for _ in range(blocks - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=norm == "none"), norm_layer(c // 2), nn.ReLU(inplace=True)]
            c //= 2
        layers += [nn.ConvTranspose2d(c, 3, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.fc(z).view(-1, self.base_channels, 4, 4))


class Discriminator(nn.Module):
    """Images N x 3 x S x S in [-1, 1] -> one real/fake logit per image (N,).

    ``norm="spectral"`` wraps every layer in spectral normalisation (steady without DP);
    ``"group"`` or ``"none"`` give a network Opacus can train (no buffers, no batch statistics).
    """

    def __init__(self, *, image_size: int = 32, width: int = 64, norm: str = "spectral") -> None:
        super().__init__()
        if norm not in DISCRIMINATOR_NORMS:
            raise ValueError(f"discriminator norm must be one of {DISCRIMINATOR_NORMS}, got {norm!r}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        blocks = _check_size(image_size)
        self.image_size, self.width, self.norm = image_size, width, norm
        sn = nn.utils.parametrizations.spectral_norm if norm == "spectral" else (lambda m: m)
        layers: list[nn.Module] = [sn(nn.Conv2d(3, width, 4, 2, 1)), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(blocks - 1):
            layers.append(sn(nn.Conv2d(c, c * 2, 4, 2, 1, bias=norm != "group")))
            if norm == "group":
                layers.append(_group_norm(c * 2))
            layers.append(nn.LeakyReLU(0.2))
            c *= 2
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = sn(nn.Linear(c * 16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(1)

    def __reduce_ex__(self, protocol: Any) -> tuple:
        """Pickled as its settings and weights: torch refuses to pickle spectral-norm parametrizations, and
        Lightning's ``ddp_spawn`` pickles the module to start its processes (deepcopy goes this way too)."""
        return _rebuild_discriminator, (self.image_size, self.width, self.norm, self.state_dict(), self.training)


def _rebuild_discriminator(image_size: int, width: int, norm: str, state: dict, training: bool) -> Discriminator:
    """A pickled :class:`Discriminator` back: same settings, same weights and spectral-norm state, same mode."""
    d = Discriminator(image_size=image_size, width=width, norm=norm)
    d.load_state_dict(state)
    return d.train(training)


class ExportedGenerator(nn.Module):
    """What ``GAN.export_generator`` exports (torch.export, or TorchScript): z -> images in [0, 1] (the SampleableGenerator range)."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator
        self.latent_dim = generator.latent_dim
        self.image_size = generator.image_size

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return ((self.generator(z) + 1.0) * 0.5).clamp(0.0, 1.0)
