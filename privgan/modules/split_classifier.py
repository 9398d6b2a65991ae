"""LightningModule: identity classifier cut in two, with activation noise and DP-SGD defences."""

from __future__ import annotations

from dataclasses import asdict

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from privgan.defences.activation_noise import ActivationNoise
from privgan.defences.dp import DPSGD, DPState, as_dpsgd, make_dp_compatible, make_private_in_trainer
from privgan.modules.dp_lifecycle import DPLifecycleMixin
from privgan.validation import check_choice, check_int, check_number
from privgan.models.split_resnet import SplitResNet

#: Normalisations of the split network (``norm``).
NORMS = ("group", "batch", "none")


class DefendedSplitNetwork(nn.Module):
    """backbone.client -> defence (clip + noise) -> backbone.server, as one module for Opacus."""

    def __init__(self, backbone: SplitResNet, defence: ActivationNoise) -> None:
        super().__init__()
        self.backbone = backbone
        self.defence = defence

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.server(self.defence(self.backbone.client(x)))


class SplitClassifier(DPLifecycleMixin, L.LightningModule):
    """Split identity classifier; exposes ``client``, ``transmit`` and ``server`` for attacks.

    ``client(x)`` is what the device computes (including clipping), ``transmit(z, generator)`` adds the
    defence's noise (what the server receives), ``server(z)`` returns logits. Validation
    accuracy is measured with the noise on, as deployed, and logged as ``utility/val_acc``.
    """

    def __init__(
        self,
        *,
        num_classes: int | None = None,
        width: int = 32,
        split_at: str = "stage1",
        norm: str = "group",
        activation_noise: float = 0.0,
        clip_norm: float | None = None,
        dp: DPSGD | None = None,
        lr: float = 1e-3,
        weight_decay: float = 5e-4,
        augment: bool = True,
    ) -> None:
        super().__init__()
        if split_at not in SplitResNet.SPLIT_POINTS:
            raise ValueError(
                f"model.split_at={split_at!r} does not exist; valid split points: {', '.join(SplitResNet.SPLIT_POINTS)}"
            )
        # every setting is checked here, before any data is read (the network itself may wait for num_classes)
        owner = "SplitClassifier"
        check_int(owner, "num_classes", num_classes, minimum=2, allow_none=True)
        check_int(owner, "width", width, minimum=1)
        check_choice(owner, "norm", norm, NORMS)
        check_number(owner, "activation_noise", activation_noise, minimum=0.0)
        check_number(owner, "clip_norm", clip_norm, minimum=0.0, inclusive=False, allow_none=True)
        check_number(owner, "lr", lr, minimum=0.0, inclusive=False)
        check_number(owner, "weight_decay", weight_decay, minimum=0.0)
        dp = as_dpsgd(dp)
        self.save_hyperparameters(ignore=["dp"])
        self.hparams.dp = asdict(dp) if dp is not None else None  # plain data: checkpoints load with weights_only
        self.dp_config = dp
        self.net: DefendedSplitNetwork | None = None
        self._dp: DPState | None = None
        if num_classes is not None:
            self._build(num_classes)

    # -- construction ------------------------------------------------------------------------------
    def _build(self, num_classes: int) -> None:
        self.hparams.num_classes = num_classes
        self.net = self.make_network()

    def make_network(self) -> DefendedSplitNetwork:
        """A freshly initialised network of this module's architecture and defence (no DP state)."""
        hp = self.hparams
        backbone = SplitResNet(num_classes=hp.num_classes, width=hp.width, split_at=hp.split_at, norm=hp.norm)
        net = DefendedSplitNetwork(backbone, ActivationNoise(sigma=hp.activation_noise, clip_norm=hp.clip_norm))
        return make_dp_compatible(net) if self.dp_config is not None else net

    def setup(self, stage: str) -> None:
        if self.net is None:
            dm = self.trainer.datamodule if self.trainer is not None else None
            n = getattr(dm, "num_classes", None)
            if n is None:
                raise ValueError("model.num_classes is not set and the datamodule has no num_classes")
            self._build(int(n))

    # -- split protocol ----------------------------------------------------------------------------
    def client(self, x: torch.Tensor) -> torch.Tensor:
        """Device side: features at the split point, clipped if the defence clips."""
        return self.net.defence.clip(self.net.backbone.client(x))

    def transmit(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """What crosses the network: the client's features plus the defence's noise (seeded by ``generator``)."""
        return self.net.defence.add_noise(z, generator=generator)

    def server(self, z: torch.Tensor) -> torch.Tensor:
        """Cloud side: logits from received features."""
        return self.net.backbone.server(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    # -- training ----------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int):
        x, y = batch
        model = self._dp.grad_sample_module if self._dp is not None else self.net
        if x.shape[0] == 0:  # empty Poisson batch: DP-SGD still steps (noise only), so the accountant stays exact
            return model(x).sum() * 0.0 if self._dp is not None else None
        if self.hparams.augment:
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at global step {self.global_step}; lower the learning rate")
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        self.log("utility/train_acc", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _eval_step(self, batch, split: str) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{split}/loss", F.cross_entropy(logits, y))
        self.log(f"utility/{split}_acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.dp_config is None:
            return opt
        self._dp = make_private_in_trainer(
            self.trainer, self.net, opt, self.dp_config, accountant_state=self._restored_accountant
        )
        self.hparams.dp_noise_multiplier = self._dp.noise_multiplier
        return self._dp.optimizer

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.net is None:
            self._build(int(checkpoint["hyper_parameters"]["num_classes"]))
