"""Send privgan results to Lightning loggers: scalars to all, tables and images where supported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L


def log_scalars(trainer: L.Trainer, metrics: dict[str, float], *, step: int | None = None) -> None:
    """Scalars to every attached logger at ``step`` (default: the current global step)."""
    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    for lg in trainer.loggers:
        lg.log_metrics(clean, step=trainer.global_step if step is None else step)


def wandb_loggers(trainer: L.Trainer) -> list[Any]:
    """The WandbLogger instances attached to ``trainer`` (none when W&B is not used)."""
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover
        return []
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


def log_image(trainer: L.Trainer, key: str, path: str | Path, caption: str, *, step: int | None = None) -> None:
    """A PNG to W&B (other loggers get the file on disk only), at ``step`` (default: the current global step)."""
    for lg in wandb_loggers(trainer):
        lg.log_image(key=key, images=[str(path)], caption=[caption], step=trainer.global_step if step is None else step)


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


def log_artifact(trainer: L.Trainer, path: str | Path, *, name: str, kind: str, description: str = "") -> None:
    """A file (e.g. the member manifest) as a versioned W&B artifact of the run."""
    loggers = wandb_loggers(trainer)
    if not loggers:
        return
    import wandb

    for lg in loggers:
        art = wandb.Artifact(name=f"{name}-{lg.experiment.id}", type=kind, description=description)
        art.add_file(str(path))
        lg.experiment.log_artifact(art)


def log_roc(trainer: L.Trainer, key: str, curves: dict[str, tuple[Any, Any]], *, max_points: int = 200,
            step: int | None = None) -> None:
    """ROC curves (name -> (fpr, tpr)) as one W&B line-series chart; FPR points thinned to ``max_points``."""
    loggers = wandb_loggers(trainer)
    if not loggers or not curves:
        return
    import numpy as np
    import wandb

    grid = np.unique(np.concatenate([np.logspace(-4, 0, max_points // 2), np.linspace(0, 1, max_points // 2)]))
    ys = [np.interp(grid, np.asarray(f, float), np.asarray(t, float)).round(5).tolist() for f, t in curves.values()]
    chart = wandb.plot.line_series(xs=grid.round(6).tolist(), ys=ys, keys=list(curves), title=f"{key} (ROC)", xname="false positive rate")
    for lg in loggers:
        lg.experiment.log({key: chart, "trainer/global_step": trainer.global_step if step is None else step})


def log_run_config(trainer: L.Trainer, config: dict[str, Any]) -> None:
    """The recipe (and versions, seed) as the run config of every logger that takes hyperparameters."""
    for lg in trainer.loggers:
        try:
            lg.log_hyperparams(config)
        except Exception as e:  # noqa: BLE001 - a logger that cannot take nested config must not stop training
            import warnings

            warnings.warn(f"{type(lg).__name__} did not take the run config: {e}", stacklevel=2)


def log_result(trainer: L.Trainer, name: str, result: Any, files: dict[str, Path], *, log_gallery: bool = False,
               step: int | None = None, epoch: int | None = None) -> None:
    """A Result to the loggers: its scalars everywhere; to W&B its ROC chart and plot, and its gallery only if asked (real faces).

    ``step`` / ``epoch``: where the attacked model was (an asynchronous attack's snapshot); default the trainer's now.
    """
    epoch = trainer.current_epoch if epoch is None else epoch
    log_scalars(trainer, result.metrics(name=name), step=step)
    if result.scores:
        from privgan.metrics.roc import roc_curve

        log_roc(trainer, f"privacy/{name}_roc", {k: roc_curve(s, l)[:2] for k, (s, l) in result.scores.items()}, step=step)
        log_image(trainer, f"privacy/{name}_roc_plot", files["roc"], f"epoch {epoch}: ROC, linear and log axes", step=step)
    if log_gallery and "gallery" in files:
        log_image(trainer, f"privacy/{name}_gallery", files["gallery"], f"epoch {epoch}: {name} gallery", step=step)
