"""Privacy auditing with one training run (Steinke, Nasr, Jagielski 2023): an empirical ε lower bound beside the accountant's.

m canaries are each put into the training set with probability ½, independently. After training
the auditor scores every canary (higher: more likely trained on), guesses "in" for the ``k_in``
highest and "out" for the ``k_out`` lowest, and abstains on the rest. For an (ε, δ)-DP training
run the number of correct guesses among r is at most what randomized response with accuracy
e^ε / (1 + e^ε) would give, up to a δ term (the paper's Theorem 3.1). The bound is the largest ε
that the observed count rejects at the confidence level.

Why it is a *lower* bound, and how low: it measures one attack on m canaries. With m canaries it
is capped (all r guesses right at 95 %: r = 100 caps it near 3.5); a weak attack or weak canaries
give a bound far below the true ε, so "bound ≪ accountant's ε" says little; "bound > accountant's
ε" says the training (or the accounting) is broken. The guess sizes are fixed in advance, and
the best of them is taken with a Bonferroni correction, so the confidence holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from scipy import stats

from privgan.attacks.result import Result, Signal


def audit_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[≥ v correct of r guesses] for an (ε, δ)-DP run with m canaries (Steinke et al. 2023, Theorem 3.1)."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= correct ({v}) <= guesses ({r}) <= canaries ({m})")
    q = 1.0 / (1.0 + math.exp(-epsilon))  # accuracy of ε-DP randomized response
    beta = float(stats.binom.sf(v - 1, r, q))
    alpha, acc = 0.0, 0.0
    for i in range(1, v + 1):  # the δ term: the worst share of the tail a δ-slack can move
        acc += float(stats.binom.pmf(v - i, r, q))
        alpha = max(alpha, acc / i)
    return min(1.0, beta + alpha * delta * 2 * m)


def epsilon_lower_bound(m: int, r: int, v: int, *, delta: float = 0.0, confidence: float = 0.95) -> float:
    """The largest ε an (ε, δ)-DP run could not have given ``v`` correct of ``r`` guesses with (0 if none)."""
    p = 1 - confidence
    if r == 0 or audit_p_value(m, r, v, 0.0, delta) >= p:
        return 0.0
    lo, hi = 0.0, 1.0
    while audit_p_value(m, r, v, hi, delta) < p:
        hi *= 2
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if audit_p_value(m, r, v, mid, delta) < p else (lo, mid)
    return lo


@dataclass(frozen=True)
class AuditConfig:
    """How the auditor guesses: fixed (k_in, k_out) guess sizes as shares of the canaries; confidence; δ."""

    guess_shares: tuple[tuple[float, float], ...] = ((0.05, 0.05), (0.1, 0.1), (0.2, 0.2), (0.1, 0.0), (0.25, 0.25))
    confidence: float = 0.95
    delta: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ValueError(f"audit confidence must be in (0, 1), got {self.confidence}")
        object.__setattr__(self, "guess_shares", tuple(tuple(g) for g in self.guess_shares))


def audit_scores(scores: torch.Tensor, included: torch.Tensor, *, accountant_epsilon: float = math.inf,
                 config: AuditConfig | None = None) -> Result:
    """The one-run audit of canary ``scores`` (higher: trained on) against who was ``included``; a Result.

    Its signal ``epsilon_lower_bound`` has chance 0 (a run that leaks nothing about its canaries
    gives 0 at most, with 95 % confidence) and the accountant's ε beside it; a bound above the
    accountant's ε is a broken guarantee, and a note says so.
    """
    config = config or AuditConfig()
    s, inc = scores.detach().float().flatten(), included.bool().flatten()
    m = len(s)
    if m != len(inc) or m < 2:
        raise ValueError(f"need one inclusion flag per canary score and 2+ canaries, got {m} scores and {len(inc)} flags")
    order = s.argsort(descending=True)
    level = 1 - (1 - config.confidence) / len(config.guess_shares)  # Bonferroni over the guess sizes tried
    best = (0.0, 0, 0, (0.0, 0.0))
    for k_in_share, k_out_share in config.guess_shares:
        k_in, k_out = int(round(k_in_share * m)), int(round(k_out_share * m))
        k_in, k_out = min(k_in, m), min(k_out, m - min(k_in, m))
        right = int(inc[order[:k_in]].sum()) + (int((~inc[order[m - k_out:]]).sum()) if k_out else 0)
        eps = epsilon_lower_bound(m, k_in + k_out, right, delta=config.delta, confidence=level)
        if eps > best[0] or best[1] == 0:
            best = (eps, k_in + k_out, right, (k_in_share, k_out_share))
    eps, r, v, shares = best
    notes = []
    if eps > accountant_epsilon:
        notes.append(f"the empirical lower bound {eps:.2f} exceeds the accountant's ε {accountant_epsilon:.2f}: the run is "
                     "not as private as accounted (a bug in training or accounting)")
    cap = epsilon_lower_bound(m, max(r, 1), max(r, 1), delta=config.delta, confidence=level)
    return Result(
        attack="audit",
        signals={"epsilon_lower_bound": Signal(eps, 0.0, (eps, eps))},  # a one-sided 95 % bound: its own interval
        headline="epsilon_lower_bound",
        values={"accountant_epsilon": accountant_epsilon, "n_canaries": float(m), "n_included": float(inc.sum()),
                "guesses": float(r), "correct": float(v), "guess_share_in": shares[0], "guess_share_out": shares[1],
                "bound_cap": cap, "confidence": config.confidence},
        notes=tuple(notes), knowledge="canaries in the training set (each with probability 1/2) and the final model",
    )


def include_half(m: int, seed: int) -> torch.Tensor:
    """Which of m canaries go into training: each with probability ½, independently (seeded)."""
    return torch.rand(m, generator=torch.Generator().manual_seed(seed)) < 0.5


def canary_labels(n: int, n_classes: int, seed: int) -> torch.Tensor:
    """Random class labels for n canary images of people outside the classes: only memorising can fit them."""
    return torch.randint(0, n_classes, (n,), generator=torch.Generator().manual_seed(seed))


__all__: Sequence[str] = ("AuditConfig", "audit_p_value", "audit_scores", "epsilon_lower_bound", "include_half",
                          "canary_labels")
