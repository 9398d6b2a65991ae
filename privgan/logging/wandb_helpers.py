"""Send privgan results to Lightning loggers: scalars to all, tables and images where supported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L


def log_scalars(trainer: L.Trainer, metrics: dict[str, float]) -> None:
    """Scalars to every attached logger at the current global step."""
    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    for lg in trainer.loggers:
        lg.log_metrics(clean, step=trainer.global_step)


def wandb_loggers(trainer: L.Trainer) -> list[Any]:
    """The WandbLogger instances attached to ``trainer`` (none when W&B is not used)."""
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover
        return []
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


def log_image(trainer: L.Trainer, key: str, path: str | Path, caption: str) -> None:
    """A PNG to W&B (other loggers get the file on disk only)."""
    for lg in wandb_loggers(trainer):
        lg.log_image(key=key, images=[str(path)], caption=[caption], step=trainer.global_step)


def log_table(trainer: L.Trainer, key: str, rows: list[dict[str, Any]], *, line: tuple[str, str] | None = None) -> None:
    """A table (and optionally a W&B line plot of two of its columns) to W&B loggers."""
    if not rows:
        return
    loggers = wandb_loggers(trainer)
    if not loggers:
        return
    import wandb

    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    table = wandb.Table(columns=cols, data=[[r.get(c) for c in cols] for r in rows])
    for lg in loggers:
        payload = {key: table}
        if line is not None:
            payload[f"{key}_plot"] = wandb.plot.line(table, line[0], line[1], title=f"{line[1]} vs {line[0]}")
        lg.experiment.log(payload)
