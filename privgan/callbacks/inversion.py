"""InversionAttack: rebuild held-out faces from what the server receives, during training."""

from __future__ import annotations

from typing import Any


from privgan.attacks.inversion import InversionConfig
from privgan.callbacks.base import AttackCallback
from privgan.targets.adapters import split_target


class InversionAttack(AttackCallback):
    """The registered ``inversion`` attack (see :class:`privgan.attacks.inversion.InversionConfig`) every N epochs.

    Split models privgan did not write give ``split_layer``, the name of the sub-module whose
    output is transmitted, instead of a ``client(x)`` method; ``references`` (a folder with
    ``members/``, ``heldout/`` and ``auxiliary/``) when their datamodule has no such photos,
    read at ``image_size``.
    """

    attack = "inversion"

    def __init__(self, *, config: InversionConfig | None = None, split_layer: str | None = None, image_size: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(config=config, **kwargs)
        self.split_layer = split_layer
        self.image_size = image_size

    def target(self, pl_module: Any) -> Any:
        return split_target(pl_module, split_layer=self.split_layer)
