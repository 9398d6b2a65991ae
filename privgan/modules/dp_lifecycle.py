"""What every DP-SGD-trained privgan module does alike: log ε, pause hooks for attacks, keep the accountant."""

from __future__ import annotations

import math

import privgan.strategies  # noqa: F401  (registers the dp_ddp strategies, so a recipe can name them)
from privgan.defences.dp import DPState, dp_hooks_paused

ACCOUNTANT_KEY = "privgan_dp_accountant"


class DPLifecycleMixin:
    """Mixin for a LightningModule that keeps its Opacus state in ``self._dp`` (None when not private).

    ε, δ and the noise multiplier are logged every epoch, with ε and δ per person
    (``dp/epsilon_identity``, ``dp/delta_identity``: ``DPState.identity_privacy``) (by rank 0 only: every rank's accountant
    holds the same global steps, so one computes it); attacks run with Opacus's hooks paused;
    the accountant goes into checkpoints and comes back as ``_restored_accountant`` for
    ``make_private_in_trainer`` to continue.
    """

    _dp: DPState | None = None
    _restored_accountant: dict | None = None

    def on_train_epoch_end(self) -> None:
        if self._dp is not None and self.trainer.is_global_zero:
            self.log("dp/epsilon", self._dp.epsilon(), rank_zero_only=True)
            self.log("dp/delta", self._dp.config.delta, rank_zero_only=True)
            self.log("dp/noise_multiplier", self._dp.noise_multiplier, rank_zero_only=True)
            person = self._dp.identity_privacy()
            if person is not None:  # per person: the accountant's (unit identity) or the photo unit's group bound
                self.log("dp/epsilon_identity", person[0], rank_zero_only=True)
                self.log("dp/delta_identity", person[1], rank_zero_only=True)

    def attack_context(self):
        """Context in which attack callbacks run: Opacus hooks paused (they expect training batches)."""
        return dp_hooks_paused(self._dp)

    def epsilon(self) -> float:
        """ε spent so far (inf when training is not private, or private with zero noise)."""
        return self._dp.epsilon() if self._dp is not None else math.inf

    def privacy_spent(self) -> tuple[float, float | None]:
        """(ε, δ) spent so far; (inf, None) when training is not private."""
        return (self.epsilon(), self._dp.config.delta) if self._dp is not None else (math.inf, None)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self._dp is not None:
            checkpoint[ACCOUNTANT_KEY] = self._dp.engine.accountant.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._restored_accountant = checkpoint.get(ACCOUNTANT_KEY)
