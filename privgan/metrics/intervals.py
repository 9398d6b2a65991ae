"""Confidence intervals for binomial proportions (scipy's Wilson score interval).

Bootstrap intervals of ROC metrics (members and non-members resampled separately) are
:func:`privgan.metrics.roc.bootstrap_ci`.
"""

from __future__ import annotations

from scipy.stats import binomtest, norm


def binomial_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (no continuity correction) of ``successes`` out of ``n``; (0, 1) when n == 0.

    ``scipy.stats.binomtest(successes, n).proportion_ci(level, method="wilson")``: sane at 0
    and n, unlike the normal approximation.
    """
    if n == 0:
        return 0.0, 1.0
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """:func:`binomial_ci` with the level given as a two-sided normal quantile (z = 1.96: 95%)."""
    return binomial_ci(successes, n, level=float(2 * norm.cdf(z) - 1))


__all__ = ["binomial_ci", "wilson_interval"]
