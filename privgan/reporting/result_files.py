"""A Result on disk: ``<tag>.json`` (signals, verdict), rows, raw scores with a ROC plot, the gallery."""

from __future__ import annotations

from pathlib import Path

from privgan.attacks.result import Result
from privgan.reporting.local_files import image_grid, write_csv, write_json


def save_result(result: Result, folder: str | Path, tag: str) -> dict[str, Path]:
    """Write what ``result`` holds under ``folder`` with file names starting ``tag``; returns the paths by kind.

    The same files come from a callback during training and from ``privgan attack`` after it.
    """
    folder = Path(folder)
    files = {"json": write_json(folder / f"{tag}.json", result.to_dict())}
    if result.rows:
        files["rows"] = write_csv(folder / f"{tag}_rows.csv", [dict(r) for r in result.rows])
    if result.scores:
        first = next(iter(result.scores.values()))[1]
        rows = [{"member": int(m)} | {k: float(s[i]) for k, (s, _) in result.scores.items()} for i, m in enumerate(first.tolist())]
        files["scores"] = write_csv(folder / f"{tag}_scores.csv", rows)
        files["roc"] = save_roc_plot(result, folder / f"{tag}_roc.png")
    gallery = result.images.get("gallery")
    if gallery is not None and gallery.rows:
        files["gallery"] = image_grid(list(gallery.rows), labels=list(gallery.captions), path=folder / f"{tag}_gallery.png")
    return files


def save_roc_plot(result: Result, path: Path) -> Path:
    """ROC curves of every sub-attack on linear and log-log axes (low-FPR behaviour is what matters)."""
    from privgan.metrics.roc import roc_curve
    from privgan.reporting.plots import _plt, _save

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for name, (scores, labels) in result.scores.items():
        fpr, tpr, _ = roc_curve(scores, labels)
        for ax in axes:
            ax.plot(fpr, tpr, label=name)
    for ax, scale in zip(axes, ("linear", "log")):
        ax.plot([1e-4, 1], [1e-4, 1], "k:", lw=0.8, label="chance")
        ax.set_xscale(scale)
        ax.set_yscale(scale)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        if scale == "log":
            ax.set_xlim(1e-3, 1)
            ax.set_ylim(1e-3, 1)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, dpi=80)
