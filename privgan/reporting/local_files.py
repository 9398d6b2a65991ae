"""Plain-file outputs beside a run: CSV/JSON tables and PNG images written atomically."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write via a temp file in the same folder and rename, so readers never see half a file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, p)
    return p


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """JSON with non-finite floats kept as strings JSON readers accept (Infinity, NaN)."""
    return atomic_write_text(path, json.dumps(obj, indent=1, default=_jsonable))


def write_csv(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    """CSV whose header is the union of keys in first-seen order."""
    rows = list(rows)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, p)
    return p


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a CSV written by ``write_csv``, numbers parsed back to float."""
    with open(path, newline="") as f:
        return [{k: _num(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _num(v: str) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def _jsonable(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def image_grid(rows: list[torch.Tensor], *, labels: list[str] | None = None, path: str | os.PathLike,
               cell_inches: float = 1.1) -> Path:
    """Save rows of images (each N x 3 x H x W in [0, 1]) as one PNG grid, each row under its label.

    Axes are placed by hand: a long label sits in its own band above the row and never
    squeezes the images (tight_layout would shrink them to fit the text).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(r) for r in rows)
    band = 0.28 if labels else 0.05
    width = max(n * cell_inches, 6.0 if labels else 0.0)
    height = len(rows) * (cell_inches + band)
    fig = plt.figure(figsize=(width, height))
    for i, r in enumerate(rows):
        top = 1 - i * (cell_inches + band) / height
        if labels:
            fig.text(0.005, top - 0.02 * band / height * 3, labels[i], fontsize=7, va="top", ha="left")
        for j in range(n):
            ax = fig.add_axes((j * cell_inches / width, top - (band + cell_inches * 0.96) / height,
                               cell_inches * 0.96 / width, cell_inches * 0.96 / height))
            ax.axis("off")
            if j < len(r):
                ax.imshow(r[j].detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy(), interpolation="nearest")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p
