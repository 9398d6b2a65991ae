"""PrivacyUtilityCurve: a typed point (step, utility, ε with δ, Results) after every attack, kept on disk."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import lightning as L

from privgan.attacks.result import Result
from privgan.callbacks.base import run_dir
from privgan.callbacks.privacy_spent import privacy_spent
from privgan.reporting.points import DEFAULT_KEYS, CurvePoint, save_curve


class PrivacyUtilityCurve(L.Callback):
    """Collects Results into :class:`~privgan.reporting.points.CurvePoint` s; writes ``curve.csv``, ``curve.json``, ``curve.png``.

    A point is keyed by global step: attacks at the same step merge into one point, and a
    resumed run (the points live in the checkpoint) replaces rather than duplicates. Utility is
    the module's logged ``utility_key`` or, when the module logs none, the value of that name in a
    Result of the same step (``utility/fd_face`` from the identity-match attack);
    ``utility_higher_is_better`` defaults to False for Fréchet distances. ε and δ come from the
    module's ``privacy_spent()`` or a DP callback's (:class:`privgan.callbacks.DPSGDCallback`), else
    the logged ``dp/epsilon`` and ``dp/delta``. At the end of fit, ``timing.json`` records attack
    seconds against training seconds.

    Safe files: the run folder is locked for the fit (``.privgan.lock`` with the pid; a second
    live run into it is refused). A fit that would overwrite the points of an earlier one in the
    same folder refuses to start unless it resumes them (``ckpt_path``, e.g. ``privgan fit ...
    --ckpt_path=last``) or ``overwrite=True`` (``privgan fit ... --overwrite``). ``curve.json``
    says ``"finished": true`` (with ``epochs`` and ``max_epochs``) only once a fit ended on its own
    (its last epoch, or a callback's stop), which is how ``privgan sweep --skip-done`` tells done
    runs from interrupted ones.
    """

    def __init__(self, *, utility_key: str = "utility/val_acc", keys: Sequence[str] = DEFAULT_KEYS,
                 utility_higher_is_better: bool | None = None, out_dir: str | None = None, plot: bool = True,
                 overwrite: bool = False) -> None:
        self.utility_key = utility_key
        if utility_higher_is_better is None:  # distances (FD) are better when lower; accuracies when higher
            utility_higher_is_better = "fd" not in utility_key.rsplit("/", 1)[-1]
        self.utility_higher_is_better = utility_higher_is_better
        self.keys, self.out_dir, self.plot, self.overwrite = tuple(keys), out_dir, plot, overwrite
        self.points: list[CurvePoint] = []
        self._t0: float | None = None
        self._elapsed_before = 0.0
        self._restored = False
        self._lock = None

    def elapsed(self) -> float:
        """Seconds of fit so far, across resumes."""
        return self._elapsed_before + (time.perf_counter() - self._t0 if self._t0 else 0.0)

    def _utility(self, metrics: Any, result: Result) -> float:
        logged = metrics.get(self.utility_key)
        if logged is not None:
            return float(logged)
        return float(result.values.get(self.utility_key.rsplit("/", 1)[-1], math.nan))

    def add_result(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str, result: Result, *,
                   at: Any = None) -> CurvePoint:
        """Merge ``result`` into the point at the current step (an asynchronous attack's snapshot step) and rewrite the files."""
        if at is None:
            step, epoch, metrics, seconds = int(trainer.global_step), int(trainer.current_epoch), trainer.callback_metrics, self.elapsed()
            epsilon, delta = privacy_spent(trainer, pl_module)
            dp = getattr(pl_module, "_dp", None)
            person = dp.identity_privacy() if dp is not None and hasattr(dp, "identity_privacy") else None
        else:
            step, epoch, metrics, seconds = at.step, at.epoch, at.metrics, at.fit_seconds
            epsilon, delta = at.epsilon, at.delta
            person = (at.epsilon_identity, at.delta_identity) if at.epsilon_identity is not None else None
        old = next((p for p in self.points if p.step == step), None)
        utility = self._utility(metrics, result)
        if old is not None and math.isnan(utility):
            utility = old.utility
        point = CurvePoint(step=step, epoch=epoch, utility_key=self.utility_key, utility=utility,
                           utility_higher_is_better=self.utility_higher_is_better, epsilon=epsilon, delta=delta,
                           fit_seconds=seconds, results=dict(old.results) if old else {},
                           epsilon_identity=person[0] if person else None,
                           delta_identity=person[1] if person else None).with_result(name, result)
        self.points = sorted([p for p in self.points if p.step != step] + [point], key=lambda p: p.step)
        if trainer.is_global_zero:
            self.write(run_dir(trainer, self.out_dir))
        return point

    def write(self, out: Path, **meta: Any) -> None:
        """``curve.json`` (typed points; ``finished`` false until the fit ends), ``curve.csv`` (flat rows) and ``curve.png``."""
        from privgan.reporting.local_files import write_csv
        from privgan.reporting.plots import plot_run_curve

        save_curve(out / "curve.json", self.points, **({"finished": False} | meta))
        write_csv(out / "curve.csv", [p.flat() for p in self.points])
        if self.plot:
            plot_run_curve(self.points, self.keys, out / "curve.png", title=str(Path(out).name))

    # -- one run per folder, no silent overwrite ---------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        from privgan.reporting.local_files import RunFolderLock

        self._lock = RunFolderLock(run_dir(trainer, self.out_dir)).acquire()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._release()
        self._restored = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._release()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Refuse to start over a folder whose curve has points this fit did not resume (unless ``overwrite``)."""
        if not trainer.is_global_zero or self._restored or self.overwrite:
            return
        out = run_dir(trainer, self.out_dir)
        kept = {p.step for p in self.points}
        lost = [s for s in earlier_steps(out / "curve.json") if s not in kept]
        if lost:
            raise FileExistsError(
                f"run folder {str(out)!r} already has {len(lost)} privacy-utility curve point(s) in curve.json that this fit "
                "did not resume; starting over would overwrite them. Resume the run from its checkpoint with "
                "`privgan fit --config ... --ckpt_path=last` (Trainer.fit(..., ckpt_path=...)), or start over on purpose "
                "with `privgan fit ... --overwrite` (PrivacyUtilityCurve(overwrite=True)), or use another trainer.default_root_dir"
            )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from privgan.reporting.local_files import write_json
        from privgan.reporting.wandb_helpers import log_table

        # done = the fit ended on its own: its last epoch (or step), or a callback's stop (early stopping, max_time)
        epochs = int(trainer.current_epoch)
        reached = ((trainer.max_epochs is not None and trainer.max_epochs >= 0 and epochs >= trainer.max_epochs)
                   or (trainer.max_steps is not None and trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps))
        finished = bool((reached or trainer.should_stop) and not trainer.interrupted)
        save_curve(run_dir(trainer, self.out_dir) / "curve.json", self.points, finished=finished, epochs=epochs,
                   max_epochs=trainer.max_epochs, stopped_early=bool(finished and not reached))

        total = self.elapsed()
        seconds: dict[str, float] = {}
        runs: dict[str, int] = {}
        for p in self.points:
            for name, r in p.results.items():
                seconds[name] = seconds.get(name, 0.0) + r.seconds
                runs[name] = runs.get(name, 0) + 1
        for cb in trainer.callbacks:  # time spent keeping shadow models in step counts as attack time
            if getattr(cb, "shadow_seconds", 0.0):
                seconds[cb.name] = seconds.get(cb.name, 0.0) + cb.shadow_seconds
        spent = sum(seconds.values())
        write_json(run_dir(trainer, self.out_dir) / "timing.json", {
            "fit_seconds": total, "attack_seconds": seconds, "attack_runs": runs,
            "attack_share_of_fit": spent / total if total > 0 else math.nan, "train_seconds_without_attacks": total - spent,
        })
        rows = [p.flat() for p in self.points]
        flat_keys = ["privacy/" + k.replace("/", "_", 1) for k in self.keys]
        y = next((k for k in flat_keys if any(k in r for r in rows)), None)
        log_table(trainer, "curve/privacy_utility", rows, line=("utility", y) if y else None)

    def state_dict(self) -> dict[str, Any]:
        return {"points": [p.to_dict() for p in self.points], "elapsed": self.elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.points = [CurvePoint.from_dict(p) for p in state_dict.get("points", [])]
        self._elapsed_before = float(state_dict.get("elapsed", 0.0))
        self._restored = True


def earlier_steps(path: str | Path) -> list[int]:
    """The steps of the points a ``curve.json`` holds (none when there is no file or it is unreadable)."""
    try:
        data = json.loads(Path(path).read_text())
        return [int(p["step"]) for p in data.get("points", [])]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return []
