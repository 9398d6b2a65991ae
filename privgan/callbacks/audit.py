"""``PrivacyAudit``: canaries in the training set from step 0, an empirical ε lower bound at the end (one-run audit)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from privgan.attacks.audit import AuditConfig, audit_scores, canary_labels, include_half
from privgan.callbacks.base import publish
from privgan.callbacks.privacy_spent import privacy_spent

log = logging.getLogger(__name__)


class PrivacyAudit(L.Callback):
    """Adds ``n_canaries`` mislabelled faces, each with probability ½, to a classifier's training data, and audits them.

    Canaries are photos of people outside the classes (the datamodule's ``auxiliary()`` faces),
    each given a random class label: only memorising fits them, the strongest canary an input-space
    auditor has. At setup (before the optimizer and any DP wrap, so DP-SGD samples them like any
    photo) the datamodule's ``train_dataloader`` is extended with the included ones. At the end
    of fit each canary is scored by minus its loss and :func:`privgan.attacks.audit.audit_scores`
    gives the ε lower bound at 95 % beside the accountant's ε (result ``audit``).
    """

    def __init__(self, *, n_canaries: int = 200, seed: int = 0, config: AuditConfig | dict | None = None,
                 name: str = "audit", out_dir: str | None = None) -> None:
        if n_canaries < 2:
            raise ValueError(f"PrivacyAudit n_canaries must be >= 2, got {n_canaries}")
        self.n_canaries, self.seed, self.name, self.out_dir = n_canaries, seed, name, out_dir
        self.config = config if isinstance(config, AuditConfig) else AuditConfig(**(config or {}))
        self.canaries: tuple[torch.Tensor, torch.Tensor] | None = None
        self.included: torch.Tensor | None = None
        self.last_result = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.canaries is not None:
            return
        dm = trainer.datamodule
        aux = getattr(dm, "auxiliary", None)
        n_classes = getattr(dm, "num_classes", None)
        if not callable(aux) or n_classes is None:
            raise ValueError("PrivacyAudit needs a datamodule with auxiliary() faces (people outside the classes) and "
                             "num_classes, to make mislabelled canaries")
        faces = aux()
        if len(faces) < self.n_canaries:
            raise ValueError(f"PrivacyAudit: n_canaries={self.n_canaries} but the datamodule has {len(faces)} auxiliary "
                             "faces; lower n_canaries or give more auxiliary identities")
        if getattr(getattr(pl_module, "dp_config", None), "unit", "photo") == "identity":
            raise ValueError("PrivacyAudit audits photo-level DP: with dp.unit identity a canary would need a person "
                             "of its own; audit a dp.unit photo run")
        pick = torch.randperm(len(faces), generator=torch.Generator().manual_seed(self.seed))[: self.n_canaries]
        x, y = faces[pick].float(), canary_labels(self.n_canaries, int(n_classes), self.seed)
        self.canaries, self.included = (x, y), include_half(self.n_canaries, self.seed + 1)
        plain = dm.train_dataloader
        inc = self.included

        def train_dataloader() -> DataLoader:
            base = plain()
            extra = TensorDataset(x[inc], y[inc])
            return DataLoader(ConcatDataset([base.dataset, extra]), batch_size=base.batch_size, shuffle=True,
                              num_workers=base.num_workers, generator=torch.Generator().manual_seed(self.seed + 2))

        dm.train_dataloader = train_dataloader
        log.info("privgan audit: %d of %d canaries in the training set", int(inc.sum()), self.n_canaries)

    @torch.no_grad()
    def scores(self, pl_module: L.LightningModule) -> torch.Tensor:
        """Minus each canary's loss under the model (higher: more likely trained on)."""
        x, y = self.canaries
        was = pl_module.training
        pl_module.eval()
        try:
            logits = torch.cat([pl_module(x[i : i + 256].to(pl_module.device)).float().cpu() for i in range(0, len(x), 256)])
        finally:
            pl_module.train(was)
        return -F.cross_entropy(logits, y, reduction="none")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.canaries is None:
            return
        context = getattr(pl_module, "attack_context", None)
        eps, delta = privacy_spent(trainer, pl_module)
        cfg = self.config if delta is None else AuditConfig(self.config.guess_shares, self.config.confidence, float(delta))
        with context() if callable(context) else contextlib.nullcontext():
            s = self.scores(pl_module)
        result = audit_scores(s, self.included, accountant_epsilon=eps, config=cfg)
        self.last_result = result
        for note in result.notes:
            log.warning("privgan audit: %s", note)
        publish(trainer, pl_module, self.name, result, out_dir=self.out_dir, log_gallery=False)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "n_canaries": self.n_canaries}

