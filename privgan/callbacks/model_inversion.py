"""ModelInversionAttack: what each member class's person looks like to the classifier, during training."""

from __future__ import annotations

from typing import Any

from privgan.attacks.model_inversion import ModelInversionConfig
from privgan.callbacks.base import AttackCallback
from privgan.targets.adapters import classifier_target


class ModelInversionAttack(AttackCallback):
    """The registered ``model_inversion`` attack (see :class:`privgan.attacks.model_inversion.ModelInversionConfig`) every N epochs.

    The classifier's forward is taken as its logits (privgan's split classifier, or anyone's module);
    class c must be member identity c of the attacker's view. ``references`` (a folder with
    ``members/``, ``heldout/`` and ``auxiliary/``) when the datamodule has no such photos.
    """

    attack = "model_inversion"

    def __init__(self, *, config: ModelInversionConfig | None = None, image_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(config=config, **kwargs)
        self.image_size = image_size

    def target(self, pl_module: Any) -> Any:
        return classifier_target(pl_module)
