"""Privacy–utility plots from typed curve points: one run's curve over training, and the frontier across runs.

A panel shows one ``<result name>/<signal>`` key against utility. Its interval bars and chance
line come from each point's own Signal, its "(no leak found)" / "(inconclusive)" marks from the
owning Result's verdict: a plot never second-guesses an attack.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from privgan.reporting.points import CurvePoint


def _plt() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path, dpi: int = 90) -> Path:
    """Write ``fig`` to ``path`` (folders made) and free it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=dpi)
    _plt().close(fig)
    return p


def verdict_mark(point: CurvePoint, key: str) -> str:
    """`` (no leak found)`` or `` (inconclusive)`` from the verdict of the Result owning ``key``; '' for a leak or no Result."""
    r = point.results.get(key.partition("/")[0])
    return f" ({r.verdict})" if r is not None and r.verdict != "leak" else ""


def present_keys(points: Sequence[CurvePoint], keys: Sequence[str]) -> list[str]:
    """The ``keys`` some point has a number for, else every Result's headline (so a renamed callback still shows)."""
    found = [k for k in keys if any(not math.isnan(p.value(k)) for p in points)]
    return found or list(dict.fromkeys(f"{n}/{r.headline}" for p in points for n, r in p.results.items()))


def _panel(ax: Any, labelled: Sequence[tuple[str, CurvePoint]], key: str, style: str) -> list[tuple[float, float]]:
    """Draw ``key`` against utility: values, interval bars, the Signals' chance levels, a label per point."""
    pts = [(lab, p) for lab, p in labelled if not math.isnan(p.value(key)) and not math.isnan(p.utility)]
    xy = [(p.utility, p.value(key)) for _, p in pts]
    ax.plot([x for x, _ in xy], [y for _, y in xy], style, ms=4)
    chances: set[float] = set()
    for (lab, p), (x, y) in zip(pts, xy):
        s = p.signal(key)
        if s is not None and s.ci is not None:
            ax.plot([x, x], list(s.ci), color="grey", lw=0.8)
        if s is not None and s.chance is not None:
            chances.add(s.chance)
        eps = f" ε={p.epsilon:.2g}" if math.isfinite(p.epsilon) else ""
        ax.annotate(lab + eps + verdict_mark(p, key), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    for i, c in enumerate(sorted(chances)):
        ax.axhline(c, color="k", ls=":", lw=0.8, label=None if i else "chance")
    first = pts[0][1] if pts else None
    lower = first is not None and not first.utility_higher_is_better
    ax.set_xlabel((first.utility_key if first else "utility") + ("  (lower is better: axis reversed)" if lower else ""), fontsize=8)
    if lower:
        ax.invert_xaxis()
    ax.set_ylabel(key, fontsize=8)
    return xy


def plot_run_curve(points: Sequence[CurvePoint], keys: Sequence[str], path: str | Path, *, title: str = "") -> Path:
    """One panel per key present: the run's points over training, labelled by epoch and ε."""
    plt = _plt()
    keys = present_keys(points, keys) or ["(no attack results yet)"]
    ncols = min(4, len(keys))
    fig, axes = plt.subplots(-(-len(keys) // ncols), ncols, figsize=(4 * ncols, 3.4 * -(-len(keys) // ncols)), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.axis("off")
    for ax, key in zip(axes.flat, keys):
        _panel(ax, [(f"e{p.epoch}", p) for p in points], key, "-o")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def pareto_front(points: list[tuple[float, float]], *, higher_utility_is_better: bool = True) -> list[int]:
    """Indices of points not dominated when utility (x) is at its best and leakage (y) minimised."""
    if not higher_utility_is_better:
        points = [(-x, y) for x, y in points]
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 >= x and y2 <= y) and (x2 > x or y2 < y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot_frontier(finals: Mapping[str, CurvePoint], keys: Sequence[str], path: str | Path) -> Path:
    """The final point of each run (label -> point), one panel per key present, with the Pareto frontier through them."""
    plt = _plt()
    runs = [(lab, p) for lab, p in finals.items() if not math.isnan(p.utility)]
    keys = present_keys([p for _, p in runs], keys)
    if not keys:
        raise ValueError("none of the runs has a utility and an attack result to plot")
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        xy = _panel(ax, runs, key, "o")
        front = pareto_front(xy, higher_utility_is_better=runs[0][1].utility_higher_is_better)
        ax.plot([xy[i][0] for i in front], [xy[i][1] for i in front], "r--", lw=1, label="frontier")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
