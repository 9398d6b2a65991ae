"""Tiny data, a tiny module and a per-rank report for the 2-process DDP tests (importable by spawned ranks)."""

from __future__ import annotations

import datetime
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader, TensorDataset

from privgan.strategies import DPDDPStrategy

#: A bug fails a test within this instead of hanging it (Lightning passes it to the process group).
DDP_TIMEOUT = datetime.timedelta(seconds=60)


class TinyImages(L.LightningDataModule):
    """``n`` seeded random 3 x size x size images with labels in 0..3; ``batch_size`` is the expected global batch under DP."""

    def __init__(self, *, n: int = 64, batch_size: int = 8, size: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        g = torch.Generator().manual_seed(seed)
        self.data = TensorDataset(torch.rand(n, 3, size, size, generator=g), torch.randint(0, 4, (n,), generator=g))
        self.num_classes = 4

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=self.hparams.batch_size, shuffle=True)


class ZeroGradientNet(L.LightningModule):
    """A linear layer trained by plain SGD on a loss whose gradient is zero: under DP-SGD each update is the noise alone."""

    def __init__(self, *, lr: float = 1.0, head: bool = False) -> None:
        super().__init__()
        self.lr = lr
        self.net = torch.nn.Linear(3 * 16 * 16, 64)
        self.head = torch.nn.Linear(64, 1) if head else None  # a trainable part outside ``net``

    def setup(self, stage: str) -> None:
        torch.manual_seed(1000 + self.trainer.global_rank)  # ranks' RNGs independent, as in the wild: per-rank noise would show

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, _ = batch
        return (self.net(x.flatten(1)) * 0.0).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def dp_state(trainer: L.Trainer, module: L.LightningModule):
    """The fit's Opacus state: a privgan module's ``_dp`` or a DPSGDCallback's ``dp`` (None when not private)."""
    state = getattr(module, "_dp", None)
    for cb in trainer.callbacks:
        if getattr(cb, "is_dp_callback", False):
            state = cb.dp
    return state


def flat_parameters(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


class RankReport(L.Callback):
    """Writes what each rank saw and ended with to ``<out>/<tag>_rank<r>.pt``: weights, steps, batch sizes, accountant."""

    def __init__(self, out: Path, tag: str) -> None:
        self.out, self.tag = Path(out), tag
        self.batch_sizes: list[int] = []
        self.start: torch.Tensor | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = flat_parameters(pl_module)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self.batch_sizes.append(int(batch[0].shape[0]))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = dp_state(trainer, pl_module)
        report = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "batch_sizes": self.batch_sizes,
            "start": self.start,
            "end": flat_parameters(pl_module),
            "buffers": [b.detach().clone() for b in pl_module.buffers()],
            "history": list(state.engine.accountant.history) if state is not None else None,
            "epsilon": state.epsilon() if state is not None else None,
            "optimizer": type(state.optimizer).__name__ if state is not None else None,
            "expected_batch_size": state.optimizer.expected_batch_size if state is not None else None,
            "sample_rate": state.sample_rate if state is not None else None,
            "metrics": sorted(trainer.callback_metrics),
            "use_distributed_sampler": trainer._accelerator_connector.use_distributed_sampler,
        }
        torch.save(report, self.out / f"{self.tag}_rank{trainer.global_rank}.pt")


def read_reports(out: Path, tag: str, world_size: int = 2) -> list[dict]:
    """Every rank's report of the fit ``tag``, rank 0 first."""
    return [torch.load(Path(out) / f"{tag}_rank{r}.pt", weights_only=False) for r in range(world_size)]


def ddp_trainer(out: Path, tag: str, *, strategy_class: type[DDPStrategy] = DPDDPStrategy, **kwargs) -> L.Trainer:
    """2 CPU processes through Lightning's spawn launcher, gloo, a 60 s collective timeout, a RankReport."""
    callbacks = [*kwargs.pop("callbacks", []), RankReport(out, tag)]
    strategy = strategy_class(start_method="spawn", process_group_backend="gloo", timeout=DDP_TIMEOUT)
    settings = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    default_root_dir=out)
    return L.Trainer(accelerator="cpu", devices=2, strategy=strategy, callbacks=callbacks, **{**settings, **kwargs})
