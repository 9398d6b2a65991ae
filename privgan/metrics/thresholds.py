"""Cosine thresholds at a false-accept rate, and the true-accept rate at one.

Every FAR here is a *pair* false-accept rate: the fraction of different-identity (impostor)
pairs whose similarity reaches the threshold, not a rate per probe or per identity.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from privgan.metrics.roc import ArrayLike, _np, _point_at_fpr


def impostor_scores(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every different-identity pair (upper triangle: each pair once), 1-D."""
    if embeddings.ndim != 2 or labels.shape != (len(embeddings),):
        raise ValueError(f"need N x D embeddings and N labels, got {tuple(embeddings.shape)} and {tuple(labels.shape)}")
    e = F.normalize(embeddings.detach(), dim=1)
    labels = labels.to(e.device)
    impostor = (labels.view(-1, 1) != labels.view(1, -1)).triu(diagonal=1)
    return (e @ e.T)[impostor]


def threshold_at_far(impostor_scores: ArrayLike, far: float) -> float:
    """Threshold at pair false-accept rate ``far``: the (1 - far) quantile of impostor-pair scores.

    Linear interpolation between order statistics, so about a fraction ``far`` of the impostor
    pairs score above it. Raises ValueError with fewer than 1/far pairs, where that FAR
    cannot be observed.
    """
    if not 0 < far < 1:
        raise ValueError(f"far must be in (0, 1), got {far}")
    imp = _np(impostor_scores).ravel()
    if len(imp) < 1 / far:
        raise ValueError(f"{len(imp)} impostor pairs are too few to set a threshold at FAR {far:g}")
    return float(np.quantile(imp, 1 - far))


def tar_at_far(scores: ArrayLike, labels: ArrayLike, far: float = 1e-3) -> tuple[float, float]:
    """(TAR, threshold) on genuine (1) / impostor (0) pair scores at pair false-accept rate ``far``.

    The lowest observed threshold whose FAR on these pairs is <= ``far`` (accept: score >=
    threshold); no interpolation. With fewer impostor pairs than 1/far this is the point
    with no false accept (threshold +inf if the top score is an impostor's).
    """
    return _point_at_fpr(scores, labels, far)


__all__ = ["impostor_scores", "tar_at_far", "threshold_at_far"]
