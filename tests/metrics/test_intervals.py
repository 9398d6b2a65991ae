"""Wilson binomial intervals against published and closed-form values."""

import math

import pytest

from privgan.metrics.intervals import binomial_ci, wilson_interval


def test_known_wilson_intervals():
    # 95% Wilson intervals (z = 1.959964): 0/10 -> (0, 0.2775), 5/10 -> (0.2366, 0.7634)
    assert binomial_ci(0, 10) == (0.0, pytest.approx(0.27753, abs=1e-5))
    lo, hi = binomial_ci(5, 10)
    assert (lo, hi) == (pytest.approx(0.23659, abs=1e-5), pytest.approx(0.76341, abs=1e-5))
    assert binomial_ci(10, 10) == (pytest.approx(1 - 0.27753, abs=1e-5), 1.0)


def test_wilson_interval_takes_z_and_matches_the_formula():
    for k, n, z in [(0, 20, 1.96), (3, 20, 1.96), (10, 20, 1.0), (7, 9, 2.576)]:
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        lo, hi = wilson_interval(k, n, z)
        assert lo == pytest.approx(max(0.0, centre - half), abs=1e-12)
        assert hi == pytest.approx(centre + half, abs=1e-12)
    # 0/n upper bound in closed form: z^2 / (n + z^2)
    assert wilson_interval(0, 20)[1] == pytest.approx(1.96**2 / (20 + 1.96**2), rel=1e-12)


def test_level_and_empty():
    assert binomial_ci(0, 0) == (0.0, 1.0) and wilson_interval(0, 0) == (0.0, 1.0)
    lo90, hi90 = binomial_ci(5, 10, level=0.9)
    lo95, hi95 = binomial_ci(5, 10)
    assert lo95 < lo90 < 0.5 < hi90 < hi95
