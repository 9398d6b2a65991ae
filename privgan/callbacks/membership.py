"""MembershipAttack: loss-threshold and offline-LiRA attacks on a classifier during training."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
from torch import nn

from privgan.attacks.membership import (
    MembershipScores,
    ReferenceModels,
    fresh_copy,
    logit_confidence,
    loss_attack,
    offline_lira,
    predict_logits,
)
from privgan.callbacks.base import AttackCallback, as_references, datamodule_of, run_dir
from privgan.logging.local_files import write_csv
from privgan.logging.wandb_helpers import log_image, log_roc
from privgan.metrics.roc import roc_curve


class MembershipAttack(AttackCallback):
    """Was this exact photo in the training set? Members vs held-out photos of the same people.

    Runs the loss-threshold attack and, with ``reference_models`` > 0, offline LiRA against
    reference models trained alongside the target (one epoch per target epoch) on seeded
    halves of the candidate pool. Members are subsampled to as many as there are non-members.
    Raw scores and labels are saved beside the metrics (``membership/epoch_NNN.csv``) with a
    ROC plot on linear and log axes. A model privgan did not write is attacked through its own
    forward (logits); give ``references`` (a folder with ``members/`` and ``heldout/``, photos
    resized to ``image_size``) when its datamodule has no ``members()`` / ``nonmembers()``.
    """

    name = "membership"

    def __init__(
        self,
        *,
        every_n_epochs: int = 1,
        reference_models: int = 2,
        n_boot: int = 500,
        save_scores: bool = True,
        seed: int = 0,
        out_dir: str | None = None,
        reference_factory: Callable[[], nn.Module] | None = None,
        references: Any = None,
        image_size: int = 64,
        fail_on_error: bool = False,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, fail_on_error=fail_on_error)
        self.references = as_references(references, image_size=image_size)
        self.reference_models = reference_models
        self.n_boot = n_boot
        self.save_scores = save_scores
        self.seed = seed
        self.out_dir = out_dir
        self.reference_factory = reference_factory
        self.references_: ReferenceModels | None = None
        self._pending_refs: dict | None = None
        self.reference_seconds = 0.0

    # -- candidates -------------------------------------------------------------------------------
    def _candidates(self, trainer: L.Trainer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dm = datamodule_of(trainer, ("members", "nonmembers"), self.references)
        mem, non = dm.members(), dm.nonmembers()
        n = min(len(mem), len(non))
        g = torch.Generator().manual_seed(self.seed)
        mi = torch.randperm(len(mem), generator=g)[:n]
        ni = torch.randperm(len(non), generator=g)[:n]
        x = torch.cat([mem.images[mi], non.images[ni]])
        y = torch.cat([mem.labels[mi], non.labels[ni]])
        m = torch.cat([torch.ones(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)])
        return x, y, m

    def _reference_factory(self, pl_module: L.LightningModule) -> Callable[[], nn.Module]:
        if self.reference_factory is not None:
            return self.reference_factory
        if hasattr(pl_module, "make_network"):
            return pl_module.make_network
        return lambda: fresh_copy(pl_module)

    # -- references keep pace with the target -----------------------------------------------------
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.reference_models and trainer.is_global_zero and not trainer.sanity_checking:
            if self.references_ is None:
                x, y, _ = self._candidates(trainer)
                lr = float(getattr(pl_module, "hparams", {}).get("lr", 1e-3))
                self.references_ = ReferenceModels(
                    self._reference_factory(pl_module), x, y, k=self.reference_models, lr=lr, seed=self.seed
                )
                if self._pending_refs is not None:
                    self.references_.load_state_dict(self._pending_refs)
                    self._pending_refs = None
            target_epochs = trainer.current_epoch + 1
            if self.references_.epochs_ < target_epochs:
                t0 = time.perf_counter()
                self.references_.train(target_epochs - self.references_.epochs_)
                self.reference_seconds += time.perf_counter() - t0
        super().on_train_epoch_end(trainer, pl_module)

    # -- the attack ----------------------------------------------------------------------------
    def attack(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        x, y, m = self._candidates(trainer)
        logits = predict_logits(pl_module, x.to(pl_module.device)).cpu()
        results: list[MembershipScores] = [loss_attack(logits, y, m)]
        if self.references_ is not None and self.references_.epochs_ > 0:
            ref = self.references_.confidences(x, y)
            results.append(offline_lira(logit_confidence(logits, y), ref, self.references_.in_mask, m))
        metrics: dict[str, float] = {}
        for r in results:
            for k, v in r.metrics(n_boot=self.n_boot, seed=self.seed).items():
                metrics[f"privacy/membership_{r.attack}_{k}"] = v
        best = max(results, key=lambda r: metrics[f"privacy/membership_{r.attack}_auc"])
        for k in ("auc", "auc_ci_low", "auc_ci_high", "tpr_at_fpr_0.01", "tpr_at_fpr_0.001"):
            metrics[f"privacy/membership_{k}"] = metrics[f"privacy/membership_{best.attack}_{k}"]
        metrics["privacy/membership_reference_train_seconds"] = self.reference_seconds
        if self.save_scores:
            self._save(trainer, results)
        return metrics

    def _save(self, trainer: L.Trainer, results: list[MembershipScores]) -> None:
        save_scores_and_roc(trainer, results, run_dir(trainer, self.out_dir) / "membership", "privacy/membership_roc")

    # -- resume ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        s = super().state_dict() | {"reference_seconds": self.reference_seconds}
        if self.references_ is not None:
            s["references"] = self.references_.state_dict()
        return s

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._pending_refs = state_dict.get("references")
        self.reference_seconds = state_dict.get("reference_seconds", 0.0)


def save_scores_and_roc(trainer: L.Trainer, results: list[MembershipScores], out: Path, key: str) -> None:
    """Raw scores (``epoch_NNN.csv``) and ROC plot (``epoch_NNN_roc.png``) on disk; the ROC chart and plot to W&B."""
    tag = f"epoch_{trainer.current_epoch:03d}"
    rows = [{"label": int(l)} | {r.attack: float(r.scores[i]) for r in results} for i, l in enumerate(results[0].labels)]
    write_csv(out / f"{tag}.csv", rows)
    save_roc_plot(results, out / f"{tag}_roc.png")
    log_roc(trainer, key, {r.attack: roc_curve(r.scores, r.labels)[:2] for r in results})
    log_image(trainer, f"{key}_plot", out / f"{tag}_roc.png", f"epoch {trainer.current_epoch}: ROC, linear and log axes")


def save_roc_plot(results: list[MembershipScores], path) -> None:
    """ROC curves on linear and log-log axes (low-FPR behaviour is what matters)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for r in results:
        fpr, tpr, _ = roc_curve(r.scores, r.labels)
        for ax in axes:
            ax.plot(fpr, tpr, label=r.attack)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
