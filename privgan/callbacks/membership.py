"""MembershipAttack: loss-threshold and offline-LiRA attacks on a classifier during training."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import lightning as L
from torch import nn

from privgan.attacks.membership import MembershipConfig, ShadowModels, make_shadow_models
from privgan.callbacks.base import AttackCallback
from privgan.targets.adapters import classifier_target


class MembershipAttack(AttackCallback):
    """The registered ``membership`` attack (see :class:`privgan.attacks.membership.MembershipConfig`) every N epochs.

    Its shadow models train alongside the target, one epoch per target epoch, and live in the
    checkpoint so a resumed run continues them. A model privgan did not write is attacked
    through its forward (logits); ``shadow_factory`` builds untrained copies for the shadow
    models (default: the module's ``make_network`` or a re-initialised copy).
    """

    attack = "membership"
    _local_only = AttackCallback._local_only + ("shadow_", "_pending_shadow")

    def __init__(self, *, config: MembershipConfig | None = None, shadow_factory: Callable[[], nn.Module] | None = None,
                 image_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(config=config, **kwargs)
        self.shadow_factory, self.image_size = shadow_factory, image_size
        self.shadow_: ShadowModels | None = None
        self._pending_shadow: dict | None = None
        self.shadow_seconds = 0.0
        self.shadow_models_here: list[int] = []  # under DDP: the reference models this rank trains

    def target(self, pl_module: Any) -> Any:
        return classifier_target(pl_module, shadow_factory=self.shadow_factory)

    def run_config(self, epoch: int) -> Any:
        return dataclasses.replace(self.config, shadow_epochs=epoch + 1)

    def resources(self) -> dict[str, Any]:
        return {"shadow": self.shadow_} if self.shadow_ is not None else {}

    def resources_from_checkpoint(self, state: dict[str, Any], target: Any, view: Any, config: Any) -> dict[str, Any]:
        """The shadow models the training run kept, when they match ``config`` (else they are retrained)."""
        saved = state.get("shadow")
        if not config.shadow_models or saved is None or len(saved["models"]) != config.shadow_models:
            return {}
        shadow = make_shadow_models(target, view, config)
        shadow.load_state_dict(saved)
        return {"shadow": shadow} if shadow.epochs_ == config.shadow_epochs else {}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Shadow models keep pace with the target (one epoch per epoch), then the attack runs when due.

        On several processes each rank trains its share of the reference models (model j on rank
        j mod W) and rank 0 gathers them, so it holds all of them, trained as one process would.
        """
        from privgan.callbacks.ddp_coordination import distributed

        several = distributed(trainer)
        if self.config.shadow_models and (trainer.is_global_zero or several) and not trainer.sanity_checking:
            if self.shadow_ is None:
                self.shadow_ = make_shadow_models(self.target(pl_module), self.view(trainer), self.config)
                if self._pending_shadow is not None:
                    self.shadow_.load_state_dict(self._pending_shadow)
                    self._pending_shadow = None
            behind = trainer.current_epoch + 1 - self.shadow_.epochs_
            if behind > 0:
                t0 = time.perf_counter()
                if several:
                    self._train_shadow_share(trainer, behind)
                else:
                    self.shadow_.train(behind)
                self.shadow_seconds += time.perf_counter() - t0
        super().on_train_epoch_end(trainer, pl_module)

    def _train_shadow_share(self, trainer: L.Trainer, epochs: int) -> None:
        """This rank's reference models ``epochs`` more epochs; rank 0 then loads every rank's models."""
        from privgan.callbacks.ddp_coordination import gather_blocks

        rank, world = trainer.global_rank, trainer.world_size
        mine = [j for j in range(self.shadow_.k) if j % world == rank]
        self.shadow_.train(epochs, only=mine)
        self.shadow_models_here = mine
        blocks = gather_blocks(self.name, "gathering reference models", trainer.global_step,
                               {j: self.shadow_.model_state(j) for j in mine})
        if trainer.is_global_zero:
            for block in blocks[1:]:  # rank 0's own models are already here
                for j, state in block.items():
                    self.shadow_.load_model_state(j, state)

    def state_dict(self) -> dict[str, Any]:
        s = super().state_dict() | {"shadow_seconds": self.shadow_seconds}
        if self.shadow_ is not None:
            s["shadow"] = self.shadow_.state_dict()
        return s

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._pending_shadow = state_dict.get("shadow")
        self.shadow_seconds = float(state_dict.get("shadow_seconds", 0.0))
