"""ROC curve and AUC (torchmetrics), TPR at a fixed low FPR (privgan's, strict), stratified bootstrap CIs (scipy)."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.stats import bootstrap
from torchmetrics.functional.classification import binary_auroc, binary_roc

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]


def _np(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _check(scores: np.ndarray, labels: np.ndarray) -> None:
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be 1-D and the same length")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (non-member) or 1 (member)")
    if labels.min() == labels.max():
        raise ValueError("need both members (1) and non-members (0) to compute a ROC curve")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")


def _ranked(scores: ArrayLike, labels: ArrayLike) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """Validated input for torchmetrics: (dense ranks scaled to [0, 1], labels, distinct scores, labels as numpy).

    torchmetrics takes scores outside [0, 1] for logits and applies a sigmoid, which would
    merge large scores into ties (sigmoid(40) == 1.0 in float64) and return thresholds in
    sigmoid space; dense ranks keep the order and the ties exactly.
    """
    s, y = _np(scores), _np(labels).astype(int)
    _check(s, y)
    distinct, rank = np.unique(s, return_inverse=True)
    return torch.from_numpy(rank / max(len(distinct) - 1, 1)), torch.from_numpy(y), distinct, y


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points (fpr, tpr, thresholds) in float64, higher score = member; ties are one step.

    torchmetrics' ``binary_roc``; a point accepts scores ``>=`` its threshold, the first point
    (0, 0) has threshold +inf. Its float32 rates are turned back into counts and divided in
    float64, so an FPR of 1/1000 compares equal to 1e-3 (exact below ~8 million per class).
    """
    preds, target, distinct, y = _ranked(scores, labels)
    fpr, tpr, thr = binary_roc(preds, target, validate_args=False)
    n1, n0 = int(y.sum()), int(len(y) - y.sum())
    fpr = np.rint(fpr.double().numpy() * n0) / n0
    tpr = np.rint(tpr.double().numpy() * n1) / n1
    thr = np.r_[np.inf, distinct[np.rint(thr[1:].numpy() * max(len(distinct) - 1, 1)).astype(int)]]
    return fpr, tpr, thr


def auc_score(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve: torchmetrics' ``binary_auroc`` (= Mann-Whitney U with ties counted half; float32)."""
    preds, target, _, _ = _ranked(scores, labels)
    return float(binary_auroc(preds, target, validate_args=False))


def _point_at_fpr(scores: ArrayLike, labels: ArrayLike, fpr: float) -> tuple[float, float]:
    """(TPR, threshold) of the last ROC point with FPR <= ``fpr``: observed points only, no interpolation."""
    f, t, thr = roc_curve(scores, labels)
    i = int(np.nonzero(f <= fpr + 1e-12)[0][-1])
    return float(t[i]), float(thr[i])


def tpr_at_fpr(scores: ArrayLike, labels: ArrayLike, fpr: float) -> float:
    """Highest TPR reached with FPR <= ``fpr`` (strict: no interpolation beyond observed points)."""
    return _point_at_fpr(scores, labels, fpr)[0]


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``metric(scores, labels)``, resampling members and non-members separately.

    ``scipy.stats.bootstrap`` with members and non-members as two independent samples; the
    same ``seed`` gives the same interval. (nan, nan) when either group has a single score
    (scipy needs two; such an interval would mean nothing).
    """
    s, y = _np(scores), _np(labels).astype(int)
    _check(s, y)
    pos, neg = s[y == 1], s[y == 0]
    if min(len(pos), len(neg)) < 2:
        return math.nan, math.nan
    lab = np.r_[np.ones(len(pos), dtype=int), np.zeros(len(neg), dtype=int)]
    ci = bootstrap(
        (pos, neg),
        lambda a, b: metric(np.r_[a, b], lab),
        n_resamples=n_boot,
        confidence_level=level,
        method="percentile",
        vectorized=False,
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return float(ci.low), float(ci.high)


def membership_metrics(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    fprs: Sequence[float] = (0.001, 0.01),
    n_boot: int = 500,
    seed: int = 0,
    prefix: str = "",
) -> dict[str, float]:
    """Headline metrics: ``auc`` and ``tpr_at_fpr_X`` with 95% bootstrap CIs and the counts.

    With fewer non-members than 1/FPR, TPR at that FPR is the TPR at zero false positives:
    the count keys say how many points the numbers rest on.
    """
    s, y = _np(scores), _np(labels).astype(int)
    out: dict[str, float] = {}
    out[f"{prefix}auc"] = auc_score(s, y)
    lo, hi = bootstrap_ci(auc_score, s, y, n_boot=n_boot, seed=seed)
    out[f"{prefix}auc_ci_low"], out[f"{prefix}auc_ci_high"] = lo, hi
    for f in fprs:
        key = f"{prefix}tpr_at_fpr_{f:g}"
        out[key] = tpr_at_fpr(s, y, f)
        lo, hi = bootstrap_ci(lambda a, b, f=f: tpr_at_fpr(a, b, f), s, y, n_boot=n_boot, seed=seed)
        out[f"{key}_ci_low"], out[f"{key}_ci_high"] = lo, hi
    out[f"{prefix}n_members"] = float(y.sum())
    out[f"{prefix}n_nonmembers"] = float(len(y) - y.sum())
    return out
