"""Shared machinery of attack callbacks: when to attack, timing, logging, publishing to the curve."""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn

from privgan.logging.wandb_helpers import log_scalars


class AttackCallback(L.Callback):
    """Runs ``attack`` every ``every_n_epochs`` epochs (and after the last one) on rank zero.

    Subclasses implement ``attack(trainer, module) -> dict`` of metric name to value; this
    base logs them to every logger, adds ``privacy/<name>_seconds``, and hands them to any
    ``PrivacyUtilityCurve`` on the trainer. An attack that raises is reported as a warning and
    training goes on (set ``fail_on_error=True`` to stop instead).
    """

    name = "attack"

    def __init__(self, *, every_n_epochs: int = 1, fail_on_error: bool = False) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.fail_on_error = fail_on_error
        self.seconds_total = 0.0
        self.runs = 0
        self.last_metrics: dict[str, float] = {}
        self.failures: list[dict[str, Any]] = []

    def attack(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Run the attack once and return its metrics (keys under ``privacy/``)."""
        raise NotImplementedError

    def should_run(self, trainer: L.Trainer) -> bool:
        """Every N epochs, and after the final epoch."""
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and trainer.max_epochs > 0 and epoch >= trainer.max_epochs
        return epoch % self.every_n_epochs == 0 or last or trainer.should_stop

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.should_run(trainer) or not trainer.is_global_zero:
            return
        self.run_now(trainer, pl_module)

    def run_now(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Attack immediately, log and publish; returns the metrics (empty on failure)."""
        was_training = pl_module.training
        t0 = time.perf_counter()
        context = getattr(pl_module, "attack_context", contextlib.nullcontext)
        try:
            with context():
                metrics = self.attack(trainer, pl_module)
        except Exception as e:  # noqa: BLE001 - an attack must not kill a long training run
            if self.fail_on_error:
                raise
            frame = traceback.extract_tb(e.__traceback__)[-1]
            where = f"{frame.filename}:{frame.lineno}"
            self.failures.append({"epoch": trainer.current_epoch, "error": repr(e), "where": where})
            rank_zero_warn(
                f"privgan {type(self).__name__} failed at epoch {trainer.current_epoch}: {e!r} (at {where}); training goes on"
            )
            return {}
        finally:
            pl_module.train(was_training)
        dt = time.perf_counter() - t0
        self.seconds_total += dt
        self.runs += 1
        metrics[f"privacy/{self.name}_seconds"] = dt
        self.last_metrics = metrics
        log_scalars(trainer, metrics)
        from privgan.callbacks.curve import PrivacyUtilityCurve

        for cb in trainer.callbacks:
            if isinstance(cb, PrivacyUtilityCurve):
                cb.add(trainer, pl_module, metrics, source=self.name)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"seconds_total": self.seconds_total, "runs": self.runs, "failures": self.failures}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds_total = state_dict.get("seconds_total", 0.0)
        self.runs = state_dict.get("runs", 0)
        self.failures = list(state_dict.get("failures", []))


def run_dir(trainer: L.Trainer, out_dir: str | None = None) -> Path:
    """Where a callback writes its files: ``out_dir`` or the trainer's default_root_dir."""
    p = Path(out_dir) if out_dir else Path(trainer.default_root_dir)
    p.mkdir(parents=True, exist_ok=True)
    return p


def datamodule_of(trainer: L.Trainer, needs: tuple[str, ...], references: Any = None) -> Any:
    """Where an attack reads its data: ``references`` (a ReferenceFolder or anything with the methods) or the trainer's datamodule."""
    dm = references if references is not None else trainer.datamodule
    missing = [n for n in needs if not hasattr(dm, n)]
    if dm is None or missing:
        raise TypeError(
            f"this attack needs a datamodule with {', '.join(needs)} (privgan.data.FaceIdentityDataModule "
            f"has them), or references= a folder (privgan.data.ReferenceFolder); got {type(dm).__name__} "
            f"missing {', '.join(missing) or 'everything'}"
        )
    return dm


def as_references(references: Any, image_size: int) -> Any:
    """A path becomes a :class:`~privgan.data.reference_folder.ReferenceFolder`; objects and None pass through."""
    if isinstance(references, (str, os.PathLike)):
        from privgan.data.reference_folder import ReferenceFolder

        return ReferenceFolder(references, image_size=image_size)
    return references
