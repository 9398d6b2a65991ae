"""``InitFrom``: start a run from a public model's weights, refusing one that saw the study's people."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import lightning as L
import torch

from privgan.data.people import people_in_manifest, people_named, refuse_overlap
from privgan.modules.warm_start import load_weights, select_trainable

log = logging.getLogger(__name__)


class InitFrom(L.Callback):
    """Load ``checkpoint``'s weights at setup (before the optimizer and DP wrap) and freeze all but ``trainable``.

    ``init_exclude``: parameter-name prefixes left as initialised (e.g. a classifier head whose size
    differs). ``trainable``: prefixes that keep training (None: all). The people check reads the
    public run's ``manifest.json`` (``public_manifest``, default: the checkpoint's run folder) and
    refuses when it shares anyone with the study's split (the datamodule's manifest); a public model
    without a manifest is refused unless ``check_people=False`` (then you vouch that its data is public).
    Networks the module builds afresh through ``make_network`` (the membership attack's LiRA shadow
    models) start from the same weights, so they are trained as the target was.
    A resumed run (``--ckpt_path``) loads its own checkpoint afterwards, so nothing is lost. Callbacks
    set up before the module: a module that builds its layers in ``setup`` (privgan's, once the
    datamodule knows the number of identities) is set up here first.
    """

    def __init__(self, checkpoint: str, *, init_exclude: Sequence[str] = (), trainable: Sequence[str] | None = None,
                 public_manifest: str | None = None, check_people: bool = True) -> None:
        self.checkpoint, self.init_exclude = checkpoint, tuple(init_exclude)
        self.trainable = None if trainable is None else tuple(trainable)
        self.public_manifest, self.check_people = public_manifest, check_people
        self.loaded: list[str] = []

    def _public_manifest(self) -> Path:
        p = Path(self.public_manifest) if self.public_manifest else Path(self.checkpoint).resolve().parent.parent / "manifest.json"
        if not p.is_file():
            raise FileNotFoundError(
                f"InitFrom: no manifest of the public model's people at {str(p)!r}; pass public_manifest: <its run's "
                "manifest.json>, or check_people: false if its data is public and shares no one with this study")
        return p

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self.check_people:
            dm = trainer.datamodule
            study = getattr(dm, "manifest_", None)
            if study is None:
                raise ValueError("InitFrom: the datamodule has no split manifest (manifest_) to check the public "
                                 "model's people against; use a privgan datamodule, or check_people: false")
            pub = self._public_manifest()
            refuse_overlap(people_in_manifest(pub), people_named(asdict(study)), public_source=str(pub),
                           study_source=f"the split of {trainer.default_root_dir}")
        if next(pl_module.parameters(), None) is None:  # built in its own setup (privgan's modules: idempotent)
            pl_module.setup(stage)
        self.loaded = load_weights(pl_module, self.checkpoint, exclude=self.init_exclude)
        restart = getattr(pl_module, "on_init_from", None)
        if callable(restart):  # training-progress state the module starts anew (the GAN's EMA warm-up)
            restart()
        kept = select_trainable(pl_module, self.trainable)
        self._warm_fresh_networks(pl_module)
        log.info("privgan init_from %s: %d tensors loaded, %d parameters train", self.checkpoint, len(self.loaded), len(kept))

    def _warm_fresh_networks(self, pl_module: L.LightningModule) -> None:
        """Networks the module builds afresh (``make_network``: LiRA's shadow models) start from the same weights,
        so the shadow models are trained as the target was."""
        make = getattr(pl_module, "make_network", None)
        if not callable(make) or not isinstance(getattr(pl_module, "net", None), torch.nn.Module) \
                or getattr(make, "privgan_warm", False):
            return
        exclude = [e.removeprefix("net.") for e in self.init_exclude]

        def warm_network() -> torch.nn.Module:
            net = make()
            load_weights(net, self.checkpoint, exclude=exclude, key_prefix="net.")
            return net

        warm_network.privgan_warm = True  # type: ignore[attr-defined]
        pl_module.make_network = warm_network  # type: ignore[method-assign]

