"""Opt-in: the run's member manifest as a W&B artifact."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn

from privgan.reporting.wandb_helpers import log_artifact


class MemberManifestArtifact(L.Callback):
    """Log ``<default_root_dir>/manifest.json`` as a W&B artifact ``<name>-<run id>`` of type ``manifest`` at fit start.

    privgan's DataModules write the manifest (which photos and identities were members, held
    out, non-members, auxiliary) into the run folder. It holds the **names and photo paths of
    real people**, so it stays off W&B by default: adding this callback is the opt-in.
    """

    def __init__(self, name: str = "member-manifest") -> None:
        self.name = name

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = Path(trainer.default_root_dir) / "manifest.json"
        if not path.is_file():
            rank_zero_warn(f"MemberManifestArtifact: no {path} to log (privgan's DataModules write it in setup)")
        elif trainer.is_global_zero:
            log_artifact(trainer, path, name=self.name, kind="manifest", description="who was a member: identities and photos")
