"""Reliability: a seed makes a run repeatable (weights, samples, ε); NaN losses stop naming the step."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from privgan.data.synthetic import SyntheticIdentityDataModule
from privgan.defences.dp import DPSGD
from privgan.modules.gan import GAN
from privgan.modules.split_classifier import SplitClassifier
from tests.lfw_helpers import one_thread


def _fit(module: L.LightningModule, data, tmp_path, epochs: int = 2) -> L.LightningModule:
    L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, default_root_dir=tmp_path).fit(module, data)
    return module


def _weights(m: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in m.state_dict().values() if p.is_floating_point()])


@pytest.mark.parametrize("dp", [False, True])
def test_same_seed_same_gan(tmp_path, dp):
    runs = []
    with one_thread():
        for i in range(2):
            L.seed_everything(7)
            data = SyntheticIdentityDataModule(n_identities=2, per_identity=16, image_size=32, batch_size=8, seed=7)
            gan = GAN(image_size=32, latent_dim=16, g_width=8, d_width=8,
                      **({"dp": DPSGD(noise_multiplier=1.0, max_grad_norm=1.0), "d_norm": "group"} if dp else {}))
            runs.append(_fit(gan, data, tmp_path / str(i)))
    a, b = runs
    assert torch.equal(_weights(a), _weights(b))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(a.sample(4, g), b.sample(4, torch.Generator().manual_seed(0)))
    if dp:
        assert a.epsilon() == b.epsilon() and a.epsilon() > 0
    L.seed_everything(8)
    other = _fit(GAN(image_size=32, latent_dim=16, g_width=8, d_width=8),
                 SyntheticIdentityDataModule(n_identities=2, per_identity=16, image_size=32, batch_size=8, seed=7), tmp_path / "o")
    if not dp:
        assert not torch.equal(_weights(a), _weights(other))  # the seed matters: the check can fail


def test_same_seed_same_split_classifier(tmp_path):
    out = []
    with one_thread():
        for i in range(2):
            L.seed_everything(3)
            data = SyntheticIdentityDataModule(n_identities=4, per_identity=8, image_size=16, batch_size=8)
            out.append(_weights(_fit(SplitClassifier(width=8, split_at="stage1", activation_noise=0.5), data, tmp_path / str(i))))
    assert torch.equal(out[0], out[1])


def test_split_classifier_nan_loss_names_the_step(tmp_path):
    x = torch.full((8, 3, 16, 16), float("nan"))
    loader = DataLoader(TensorDataset(x, torch.zeros(8, dtype=torch.long)), batch_size=4)
    with pytest.raises(FloatingPointError, match="loss is nan at global step 0"):
        _fit(SplitClassifier(width=8, split_at="stage1", num_classes=4), loader, tmp_path, epochs=1)
