"""PrivacyUtilityCurve: a point (step, utility, privacy metrics, ε) after every attack, kept on disk."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import lightning as L

from privgan.callbacks.base import run_dir
from privgan.logging.local_files import write_csv, write_json
from privgan.logging.wandb_helpers import log_table
from privgan.plotting import plot_run_curve

DEFAULT_PRIVACY_KEYS = (
    "privacy/inversion_reid_rate",
    "privacy/inversion_psnr_db",
    "privacy/membership_auc",
    "privacy/membership_tpr_at_fpr_0.01",
)


class PrivacyUtilityCurve(L.Callback):
    """Collects attack results into curve points and writes ``curve.csv``, ``curve.json``, ``curve.png``.

    A point is keyed by global step: attacks at the same step merge into one point, and a
    resumed run (the points live in the checkpoint) replaces rather than duplicates. Utility is
    read from ``utility_key`` in the trainer's metrics (``utility_higher_is_better`` defaults to
    False for Fréchet distances, True otherwise; the frontier uses it); ε from the module's ``epsilon()`` (inf
    when training is not private). At the end of fit the curve goes to W&B as a table and a
    line plot, and ``timing.json`` records attack seconds against training seconds.
    """

    def __init__(
        self,
        *,
        utility_key: str = "utility/val_acc",
        privacy_keys: Sequence[str] = DEFAULT_PRIVACY_KEYS,
        utility_higher_is_better: bool | None = None,
        out_dir: str | None = None,
        plot: bool = True,
    ) -> None:
        self.utility_key = utility_key
        if utility_higher_is_better is None:  # distances (FD) are better when lower; accuracies when higher
            utility_higher_is_better = "fd" not in utility_key.rsplit("/", 1)[-1]
        self.utility_higher_is_better = utility_higher_is_better
        self.privacy_keys = tuple(privacy_keys)
        self.out_dir = out_dir
        self.plot = plot
        self.points: list[dict[str, Any]] = []
        self._t0: float | None = None
        self._elapsed_before = 0.0

    def add(self, trainer: L.Trainer, pl_module: L.LightningModule, metrics: dict[str, float], *, source: str = "") -> dict[str, Any]:
        """Merge ``metrics`` into the point at the current step and rewrite the files."""
        step = int(trainer.global_step)
        point = next((p for p in self.points if p["step"] == step), None)
        if point is None:
            point = {"step": step}
            self.points.append(point)
            self.points.sort(key=lambda p: p["step"])
        util = trainer.callback_metrics.get(self.utility_key)
        eps = pl_module.epsilon() if hasattr(pl_module, "epsilon") else trainer.callback_metrics.get("dp/epsilon", math.inf)
        point.update(
            {
                "epoch": int(trainer.current_epoch),
                "utility": float(util) if util is not None else math.nan,
                "utility_key": self.utility_key,
                "utility_higher_is_better": self.utility_higher_is_better,
                "epsilon": float(eps),
                "fit_seconds": self._elapsed_before + (time.perf_counter() - self._t0 if self._t0 else 0.0),
            }
        )
        point.update({k: float(v) for k, v in metrics.items()})
        self._write(trainer)
        return point

    def _write(self, trainer: L.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        out = run_dir(trainer, self.out_dir)
        write_csv(out / "curve.csv", self.points)
        write_json(out / "curve.json", {"utility_key": self.utility_key, "points": self.points})
        if self.plot:
            plot_run_curve(self.points, self.privacy_keys, out / "curve.png", title=str(Path(out).name))

    # -- timing ---------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from privgan.callbacks.base import AttackCallback

        total = self._elapsed_before + (time.perf_counter() - self._t0 if self._t0 else 0.0)
        attacks = {
            type(cb).__name__: cb.seconds_total + getattr(cb, "reference_seconds", 0.0)
            for cb in trainer.callbacks
            if isinstance(cb, AttackCallback)
        }
        runs = {type(cb).__name__: cb.runs for cb in trainer.callbacks if isinstance(cb, AttackCallback)}
        spent = sum(attacks.values())
        timing = {
            "fit_seconds": total,
            "attack_seconds": attacks,
            "attack_runs": runs,
            "attack_share_of_fit": spent / total if total > 0 else math.nan,
            "train_seconds_without_attacks": total - spent,
            "attack_failures": {
                type(cb).__name__: cb.failures for cb in trainer.callbacks if isinstance(cb, AttackCallback) and cb.failures
            },
        }
        write_json(run_dir(trainer, self.out_dir) / "timing.json", timing)
        key_x = "utility"
        key_y = next((k for k in self.privacy_keys if any(k in p for p in self.points)), None)
        log_table(trainer, "curve/privacy_utility", self.points, line=(key_x, key_y) if key_y else None)

    # -- resume -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        elapsed = self._elapsed_before + (time.perf_counter() - self._t0 if self._t0 else 0.0)
        return {"points": self.points, "elapsed": elapsed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.points = list(state_dict.get("points", []))
        self._elapsed_before = float(state_dict.get("elapsed", 0.0))
