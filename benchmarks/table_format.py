"""Number formatting shared by the benchmark scripts' markdown tables."""

from __future__ import annotations

import math


def fmt(v: object) -> str:
    """A number to 3 significant digits (∞, – for NaN), a [lo, hi] interval, or the text itself."""
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return f"[{fmt(v[0])}, {fmt(v[1])}]"
    if isinstance(v, float):
        return "∞" if math.isinf(v) else ("–" if math.isnan(v) else f"{v:.3g}")
    return str(v)
