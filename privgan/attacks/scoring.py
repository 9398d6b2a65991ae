"""Turn raw attack outputs into Signals: ROC scores, identification rates; one place for chance levels."""

from __future__ import annotations

from typing import Sequence

import torch

from privgan.attacks.result import Signal
from privgan.metrics.intervals import wilson_interval
from privgan.metrics.roc import membership_metrics

#: A TPR at FPR f decides a verdict only when the negatives allow this many false positives at f.
MIN_FALSE_POSITIVES = 5


def roc_signals(scores: torch.Tensor, labels: torch.Tensor, *, fprs: Sequence[float] = (0.001, 0.01), n_boot: int = 500,
                seed: int = 0) -> tuple[dict[str, Signal], dict[str, float]]:
    """AUC and TPR at each FPR with bootstrap CIs (higher score = member), and the counts.

    A TPR at an FPR below ``MIN_FALSE_POSITIVES / n_negatives`` is reported without a chance
    level: with so few negatives it is the TPR at zero false positives and cannot decide.
    """
    m = membership_metrics(scores, labels, fprs=fprs, n_boot=n_boot, seed=seed)
    n_neg = int(m["n_nonmembers"])
    sig = {"auc": Signal(m["auc"], 0.5, (m["auc_ci_low"], m["auc_ci_high"]))}
    for f in fprs:
        k = f"tpr_at_fpr_{f:g}"
        chance = f if n_neg * f >= MIN_FALSE_POSITIVES else None
        sig[k] = Signal(m[k], chance, (m[f"{k}_ci_low"], m[f"{k}_ci_high"]))
    return sig, {"n_members": m["n_members"], "n_nonmembers": m["n_nonmembers"]}


def rate_signal(hits: torch.Tensor, chance: float | None) -> Signal:
    """A success rate over trials with its Wilson interval."""
    k, n = int(hits.sum()), int(hits.numel())
    return Signal(k / n if n else float("nan"), chance, wilson_interval(k, n))
