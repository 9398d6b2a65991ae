"""Split inversion with a face prior (GAN-prior attacks: Zhang et al. 2020 "The Secret Revealer"; GLASS 2023).

Instead of free pixels the attacker searches the codes of a face generator that knows no one of the
study, so that ``client(G(z))`` matches the observed (noised) features. Several restarts per target;
the one with the lowest feature loss is kept (the attacker can see that loss; it never sees the
originals). An optional encoder, trained on the prior's own samples pushed through the client,
gives the first restart's starting code. Plain tensor code: no Lightning needed.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from privgan.attacks.priors import FacePrior
from privgan.attacks.reconstruction import (
    Client,
    Reconstructions,
    _attack_mode,
    cosine_lr,
    keep_best,
    _check_images,
    _grad_wrt,
    normalised_feature_loss,
    plateaued,
)


def _to_shape(x: Tensor, image_shape: tuple[int, ...]) -> Tensor:
    """The prior's images at the client's input size (antialiased bilinear, differentiable)."""
    size = tuple(image_shape[-2:])
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


class LatentEncoder(nn.Module):
    """Features -> prior code: average-pooled to 4 x 4 (image-like features) or taken flat, then a two-layer MLP."""

    def __init__(self, feature_shape: tuple[int, ...], latent_dim: int, hidden: int = 512) -> None:
        super().__init__()
        pooled = feature_shape[0] * 16 if len(feature_shape) == 3 else math.prod(feature_shape)
        self.pool = nn.AdaptiveAvgPool2d(4) if len(feature_shape) == 3 else nn.Identity()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(pooled, hidden), nn.ReLU(), nn.Linear(hidden, latent_dim))

    def forward(self, f: Tensor) -> Tensor:
        return self.mlp(self.pool(f))


def fit_latent_encoder(client: Client, prior: FacePrior, *, image_shape: tuple[int, ...], feature_shape: tuple[int, ...],
                       transmit: Callable[[Tensor], Tensor] | None = None, n: int = 2048, epochs: int = 30,
                       batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                       device: torch.device | str = "cpu") -> LatentEncoder:
    """An encoder from transmitted features to the prior's codes, trained on (transmit(client(G(z))), z) for z ~ N(0, I)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, prior.latent_dim, generator=g).to(device)
    with torch.no_grad(), _attack_mode(client):
        feats = torch.cat([client(_to_shape(prior(b), image_shape)) for b in z.split(batch_size)])
        if transmit is not None:
            feats = transmit(feats)
    feats = feats.reshape(n, *feature_shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = LatentEncoder(tuple(feature_shape), prior.latent_dim).to(device)
        opt = torch.optim.Adam(enc.parameters(), lr=lr)
        for _ in range(epochs):
            for idx in torch.randperm(n, generator=g).to(device).split(batch_size):
                loss = F.mse_loss(enc(feats[idx]), z[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return enc.eval().requires_grad_(False)


def gan_prior_invert(
    client: Client,
    observed: Tensor,
    prior: FacePrior,
    *,
    image_shape: tuple[int, int, int],
    steps: int = 300,
    lr: float = 0.05,
    restarts: int = 4,
    latent_weight: float = 1e-3,
    init: Tensor | None = None,
    generator: torch.Generator | None = None,
    originals: Tensor | None = None,
) -> Reconstructions:
    """Adam on prior codes so ``client(G(z))`` matches the observed features (+ ``latent_weight`` · mean z²).

    Restart 0 starts from ``init`` (e.g. a ``fit_latent_encoder`` guess) or from random codes; the
    others from random codes drawn on ``generator``. Per target the restart with the lowest final
    feature loss is kept. The learning rate is cosine-annealed over ``steps``. The client's and the
    prior's weights, flags and modes are left as they were.
    """
    if steps < 0 or restarts < 1:
        raise ValueError(f"need steps >= 0 and restarts >= 1, got steps={steps}, restarts={restarts}")
    if originals is not None:
        _check_images(originals, image_shape, "originals")
    start = time.perf_counter()
    observed = observed.detach()
    n, d = observed.shape[0], prior.latent_dim
    best_x = torch.full((n, *image_shape), 0.5, device=observed.device)
    best_loss = torch.full((n,), math.inf, device=observed.device)
    curve: list[float] = []
    marks = {int(steps * f) for f in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)} | {max(0, steps - 1)}
    with _attack_mode(client):
        for r in range(restarts):
            z0 = init if (r == 0 and init is not None) else torch.randn(n, d, generator=generator).to(observed.device)
            z = z0.detach().clone().to(observed.device).requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)
            for t in range(steps):
                cosine_lr(opt, lr, t, steps)
                feat_loss = normalised_feature_loss(client(_to_shape(prior(z), image_shape)), observed)
                if r == 0 and t in marks:
                    curve.append(float(feat_loss.detach().mean()))
                loss = (feat_loss + latent_weight * z.pow(2).mean(1)).sum()
                z.grad = _grad_wrt(loss, z)
                opt.step()
            with torch.no_grad():
                x = _to_shape(prior(z), image_shape)
                best_x, best_loss = keep_best(best_x, best_loss, x, normalised_feature_loss(client(x), observed), r == 0)
    return Reconstructions(
        originals=None if originals is None else originals.detach(),
        reconstructions=best_x.detach(),
        attack="ganprior",
        feature_loss=best_loss,
        seconds=time.perf_counter() - start,
        converged=plateaued(curve[-3:], tolerance=0.05),
        curve=tuple(curve),
    )


def prior_sub_attack(config, target, view, observed: Tensor, originals: Tensor,
                     device: torch.device) -> tuple[str, Reconstructions, str]:
    """The ``prior`` sub-attack of the registered inversion: its name, reconstructions and the prior it used."""
    from privgan.attacks.priors import linear_prior, load_face_prior

    image_shape = tuple(originals.shape[1:])
    if config.prior == "eigenfaces":
        prior, name = linear_prior(view.auxiliary.images.to(device), config.prior_components), "eigenprior"
    else:
        prior, name = load_face_prior(config.prior, device), "ganprior"
    init = None
    if config.prior_encoder:
        noise = torch.Generator(device=device).manual_seed(config.seed + 3)
        enc = fit_latent_encoder(target.client, prior, image_shape=image_shape, feature_shape=tuple(observed.shape[1:]),
                                 transmit=lambda f: target.transmit(f, noise), seed=config.seed, device=device)
        with torch.no_grad():
            init = enc(observed)
    rec = gan_prior_invert(target.client, observed, prior, image_shape=image_shape, steps=config.prior_steps,
                           lr=config.prior_lr, restarts=config.prior_restarts, latent_weight=config.prior_latent_weight,
                           init=init, generator=torch.Generator().manual_seed(config.seed + 4), originals=originals)
    return name, replace(rec, attack=name), prior.source
