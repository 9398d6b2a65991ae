"""IdentityMatchAttack: does the generator reproduce the people it trained on? (Webster et al. 2021)."""

from __future__ import annotations

from typing import Any

from privgan.attacks.identity_match import IdentityMatchConfig
from privgan.callbacks.gan_targets import GanAttackCallback


class IdentityMatchAttack(GanAttackCallback):
    """The registered ``identity_match`` attack (see :class:`privgan.attacks.identity_match.IdentityMatchConfig`) every N epochs.

    Logs ``privacy/identity_match_auc`` etc.; per-identity scores and p-values go to
    ``identity_match/epoch_NNN_rows.csv`` and a gallery of the best matches to
    ``..._gallery.png`` (sent to the logger only with ``log_gallery``: real faces). Its
    ``fd_face`` value is the GAN's utility for a ``PrivacyUtilityCurve(utility_key="utility/fd_face")``.
    """

    attack = "identity_match"
    image_size = 112

    def __init__(self, *, config: IdentityMatchConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config=config, **kwargs)
