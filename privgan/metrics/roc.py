"""ROC AUC and TPR at a fixed low FPR, with bootstrap confidence intervals."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

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


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points (fpr, tpr, thresholds), higher score = member; ties handled as one step."""
    s, y = _np(scores), _np(labels).astype(int)
    _check(s, y)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / y.sum()]
    fpr = np.r_[0.0, fps / (len(y) - y.sum())]
    thr = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thr


def auc_score(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties counted half)."""
    s, y = _np(scores), _np(labels).astype(int)
    _check(s, y)
    from scipy.stats import rankdata

    ranks = rankdata(s)
    n1 = y.sum()
    n0 = len(y) - n1
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def tpr_at_fpr(scores: ArrayLike, labels: ArrayLike, fpr: float) -> float:
    """Highest TPR reached with FPR <= ``fpr`` (strict: no interpolation beyond observed points)."""
    f, t, _ = roc_curve(scores, labels)
    ok = f <= fpr + 1e-12
    return float(t[ok].max())


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``metric``, resampling members and non-members separately."""
    s, y = _np(scores), _np(labels).astype(int)
    _check(s, y)
    rng = np.random.default_rng(seed)
    pos, neg = np.nonzero(y == 1)[0], np.nonzero(y == 0)[0]
    vals = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        vals[b] = metric(s[idx], y[idx])
    lo, hi = np.quantile(vals, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


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
