"""RandomState: a fit resumed from an end-of-epoch checkpoint ends with the uninterrupted fit's exact weights."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from privgan.callbacks.rng import RNG_KEY, RandomState


class NoisyNet(L.LightningModule):
    """Draws from the global RNG while training (random flips, Gaussian noise), as augmentation and activation noise do."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        x = torch.where(torch.rand(len(x), 1) < 0.5, -x, x) + 0.3 * torch.randn_like(x)
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", nn.functional.cross_entropy(self.net(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def loaders() -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(96, 8, generator=g), torch.randint(0, 3, (96,), generator=g)
    train = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    return train, DataLoader(TensorDataset(x[64:], y[64:]), batch_size=16)


def fit(root: Path, epochs: int, *, keep_rng: bool, ckpt_path: str | None = None) -> dict[str, torch.Tensor]:
    """Weights after ``epochs`` epochs (resumed from ``ckpt_path`` when given), checkpointing at every epoch end."""
    L.seed_everything(0, verbose=False)
    model = NoisyNet()
    callbacks = [RandomState()] if keep_rng else []
    callbacks.append(ModelCheckpoint(dirpath=root, save_last=True, save_on_train_epoch_end=True))
    trainer = L.Trainer(max_epochs=epochs, callbacks=callbacks, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1, default_root_dir=root)
    train, val = loaders()
    trainer.fit(model, train, val, ckpt_path=ckpt_path)
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("keep_rng", [True, False])
def test_resumed_fit_matches_the_uninterrupted_one_only_with_the_random_state(tmp_path, keep_rng):
    whole = fit(tmp_path / "whole", 3, keep_rng=keep_rng)
    fit(tmp_path / "cut", 2, keep_rng=keep_rng)
    ckpt = tmp_path / "cut" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)  # plain tensors and numbers: loads without pickled objects
    assert (RNG_KEY in saved) is keep_rng
    resumed = fit(tmp_path / "cut", 3, keep_rng=keep_rng, ckpt_path=str(ckpt))
    # without the saved state the resumed epoch shuffles and draws noise as a fresh fit does
    assert same(whole, resumed) is keep_rng


def test_a_checkpoint_from_inside_an_epoch_is_not_restored_and_says_why(tmp_path):
    L.seed_everything(0, verbose=False)
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_last=True)
    trainer = L.Trainer(max_steps=3, callbacks=[RandomState(), ckpt], logger=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1, default_root_dir=tmp_path)
    train, val = loaders()
    trainer.fit(NoisyNet(), train, val)
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)[RNG_KEY]["at_epoch_end"] is False
    with pytest.warns(UserWarning, match="saved inside epoch 0.*not restored"):
        L.Trainer(max_epochs=1, callbacks=[RandomState()], logger=False, enable_progress_bar=False, enable_model_summary=False,
                  enable_checkpointing=False, accelerator="cpu", devices=1, default_root_dir=tmp_path,
                  ).fit(NoisyNet(), *loaders(), ckpt_path=str(tmp_path / "last.ckpt"))
