"""Privacy–utility plots: one run's curve over training, and the frontier across runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

CHANCE = {
    "privacy/membership_auc": 0.5,
    "privacy/membership_tpr_at_fpr_0.01": 0.01,
    "privacy/membership_tpr_at_fpr_0.001": 0.001,
    "privacy/identity_auc": 0.5,
    "privacy/identity_over_auc": 0.5,
    "privacy/identity_regular_auc": 0.5,
    "privacy/identity_tpr_at_fpr_0.01": 0.01,
    "privacy/identity_tpr_at_fpr_0.1": 0.1,
    "privacy/logan_auc": 0.5,
    "privacy/ganleaks_pixel_auc": 0.5,
    "privacy/ganleaks_embed_auc": 0.5,
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path, dpi: int = 90) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=dpi)
    _plt().close(fig)
    return p


def leak_verdict(point: dict[str, Any], key: str) -> str:
    """'leak' when the metric's CI lies above chance, 'no leak found' when it does not, '' if unknown."""
    lo = point.get(f"{key}_ci_low")
    if key.endswith("reid_rate"):
        chance = 1e-3  # a match needs the threshold set at FAR 1e-3 on impostor pairs
    else:
        chance = CHANCE.get(key)
    if lo is None or chance is None or (isinstance(lo, float) and math.isnan(lo)):
        return ""
    return "leak" if lo > chance else "no leak found"


def plot_run_curve(points: list[dict[str, Any]], keys: Sequence[str], path: str | Path, *, title: str = "") -> Path:
    """One panel per privacy metric: metric against utility, points labelled by epoch (and ε)."""
    plt = _plt()
    keys = [k for k in keys if any(k in p for p in points)] or list(keys)[:1]
    ncols = min(4, len(keys))
    nrows = -(-len(keys) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.axis("off")
    for ax, key in zip(axes.flat, keys):
        pts = [p for p in points if key in p]
        xs = [p.get("utility", math.nan) for p in pts]
        ys = [p[key] for p in pts]
        ax.plot(xs, ys, "-o", ms=4)
        for p, x, y in zip(pts, xs, ys):
            eps = p.get("epsilon", math.inf)
            lab = f"e{p.get('epoch', '?')}" + (f" ε={eps:.2g}" if math.isfinite(eps) else "")
            verdict = leak_verdict(p, key)
            if verdict == "no leak found":
                lab += " (no leak found)"
            ax.annotate(lab, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
            lo, hi = p.get(f"{key}_ci_low"), p.get(f"{key}_ci_high")
            if lo is not None and hi is not None:
                ax.plot([x, x], [lo, hi], color="grey", lw=0.8)
        if key in CHANCE:
            ax.axhline(CHANCE[key], color="k", ls=":", lw=0.8, label="chance")
        lower_better = bool(pts) and pts[0].get("utility_higher_is_better") is False
        ax.set_xlabel((pts[0].get("utility_key", "utility") if pts else "utility") + ("  (lower is better: axis reversed)" if lower_better else ""),
                      fontsize=8)
        if lower_better:
            ax.invert_xaxis()
        ax.set_ylabel(key, fontsize=8)
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


def plot_frontier(runs: list[dict[str, Any]], keys: Sequence[str], path: str | Path, *, label_key: str = "run") -> Path:
    """Final point of each run, per privacy metric, with the Pareto frontier drawn through them."""
    plt = _plt()
    keys = [k for k in keys if any(k in r for r in runs)]
    if not keys:
        raise ValueError("none of the runs has any of the privacy metrics " + ", ".join(keys))
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        rs = [r for r in runs if key in r and not math.isnan(r.get("utility", math.nan))]
        pts = [(r["utility"], r[key]) for r in rs]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18)
        for r, (x, y) in zip(rs, pts):
            eps = r.get("epsilon", math.inf)
            lab = str(r.get(label_key, "")) + (f" ε={eps:.2g}" if math.isfinite(eps) else "")
            if leak_verdict(r, key) == "no leak found":
                lab += " (no leak found)"
            ax.annotate(lab, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        front = pareto_front(pts, higher_utility_is_better=bool(rs[0].get("utility_higher_is_better", True)) if rs else True)
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "r--", lw=1, label="frontier")
        if key in CHANCE:
            ax.axhline(CHANCE[key], color="k", ls=":", lw=0.8, label="chance")
        ax.set_xlabel(rs[0].get("utility_key", "utility") if rs else "utility")
        ax.set_ylabel(key)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
