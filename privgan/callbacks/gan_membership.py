"""GanMembershipAttack: was this exact photo in the GAN's training set? LOGAN and GAN-Leaks during training."""

from __future__ import annotations

from typing import Any

from privgan.attacks.gan_membership import GanMembershipConfig
from privgan.callbacks.gan_targets import GanAttackCallback


class GanMembershipAttack(GanAttackCallback):
    """The registered ``gan_membership`` attack (see :class:`privgan.attacks.gan_membership.GanMembershipConfig`) every N epochs.

    LOGAN needs the module's ``discriminator_scores(images)`` or ``discriminator_attr``; without
    either it is skipped with a note in the Result. Raw scores and a ROC plot go to
    ``gan_membership/epoch_NNN_scores.csv`` and ``..._roc.png``.
    """

    attack = "gan_membership"

    def __init__(self, *, config: GanMembershipConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config=config, **kwargs)

    def bank_needs(self, epoch: int) -> list[tuple[int, int, str, dict]]:
        return super().bank_needs(epoch) if self.run_config(epoch).ganleaks_embed else []
