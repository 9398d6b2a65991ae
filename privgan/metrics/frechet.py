"""Fréchet distance between feature sets: on face embeddings (offline) or torchvision Inception features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import sqrtm

from privgan.metrics.roc import ArrayLike, _np
from privgan.paths import MissingDataError
from privgan.faces.embedders import IdentityEmbedder, embed_batched

#: torchvision's ImageNet Inception-v3 file name (what ``inception_v3(weights="DEFAULT")`` downloads).
TORCHVISION_INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike, *, eps: float = 1e-6) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of Gaussians fitted to two N x D feature sets.

    The matrix square root is ``scipy.linalg.sqrtm`` (torchmetrics has no public function for
    this on precomputed features); when it is not finite (singular covariances, fewer
    samples than dimensions) ``eps`` is added to both diagonals; a non-negligible imaginary
    part is an error, a tiny one (numerical noise) is dropped.
    """
    a, b = _np(feats_a), _np(feats_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be N x D with the same D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 feature vectors per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():
        off = np.eye(len(s_a)) * eps
        covmean = sqrtm((s_a + off) @ (s_b + off))
    if np.iscomplexobj(covmean):
        imag = np.abs(covmean.imag).max()
        if imag > 1e-3 * max(1.0, np.abs(covmean.real).max()):
            raise ValueError(f"matrix square root has a large imaginary part ({imag:.3g}); features may be degenerate")
        covmean = covmean.real
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean))


def fd_face(samples: torch.Tensor, real: torch.Tensor, embedder: IdentityEmbedder, *, batch_size: int = 64) -> float:
    """Fréchet distance between face embeddings of samples and real faces (aligned crops in [0, 1]).

    Works offline with any identity embedder (SFace by default in privgan). Like every Fréchet
    distance it is biased upward for small sets: compare numbers computed on equal counts.
    """
    return frechet_distance(embed_batched(embedder, samples, batch_size), embed_batched(embedder, real, batch_size))


def _inception_weights(weights_path: str | Path | None) -> Path:
    if weights_path is not None:
        p = Path(weights_path).expanduser()
        if not p.is_file():
            raise MissingDataError(f"Inception-v3 weights file not found: {str(p)!r}")
        return p
    hub = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_INCEPTION_FILE
    if hub.is_file():
        return hub
    raise MissingDataError(
        f"inception_fd needs torchvision's ImageNet Inception-v3 weights and none were found (looked in {str(hub)!r}). "
        f"Pass weights_path= to a local copy of {TORCHVISION_INCEPTION_FILE}, or, with internet, fetch it once with "
        "torchvision.models.inception_v3(weights='DEFAULT'). Offline, use fd_face (face embeddings) instead."
    )


def load_inception(*, weights_path: str | Path | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """torchvision Inception-v3 with ImageNet weights from a local file, its classifier removed (2048-d output)."""
    from torchvision.models import inception_v3

    path = _inception_weights(weights_path)
    model = inception_v3(weights=None, aux_logits=True, init_weights=False)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.fc = torch.nn.Identity()
    return model.eval().to(device)


@torch.no_grad()
def inception_features(images: torch.Tensor, model: torch.nn.Module, *, batch_size: int = 32) -> torch.Tensor:
    """2048-d pool features for images in [0, 1] (resized to 299, ImageNet-normalised)."""
    device = next(model.parameters()).device
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device).float()
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=True)
        out.append(model((x - mean) / std).float().cpu())
    return torch.cat(out)


def inception_fd(
    samples: torch.Tensor,
    real: torch.Tensor,
    *,
    weights_path: str | Path | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> float:
    """Fréchet distance on torchvision Inception-v3 features (FID-like; not comparable to TF-Inception FID numbers)."""
    model = load_inception(weights_path=weights_path, device=device)
    return frechet_distance(inception_features(samples, model, batch_size=batch_size), inception_features(real, model, batch_size=batch_size))
