"""DP-SGD through Opacus inside the Lightning module: real accounting, config errors, resume."""

import lightning as L
import pytest
import torch
from opacus.accountants import PRVAccountant

from privgan.data.synthetic import SyntheticIdentityDataModule
from privgan.defences.dp import DPSGD, DPConfigError, make_dp_compatible
from privgan.modules import SplitClassifier


def _trainer(tmp_path, epochs):
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)


def test_config_errors_say_what_is_wrong():
    with pytest.raises(DPConfigError, match="exactly one"):
        DPSGD()
    with pytest.raises(DPConfigError, match="exactly one"):
        DPSGD(noise_multiplier=1.0, target_epsilon=3.0)
    with pytest.raises(DPConfigError, match="delta"):
        DPSGD(noise_multiplier=1.0, delta=2.0)
    with pytest.raises(DPConfigError, match="max_grad_norm"):
        DPSGD(noise_multiplier=1.0, max_grad_norm=0)


def test_batchnorm_is_replaced():
    from privgan.models.split_resnet import SplitResNet

    fixed = make_dp_compatible(SplitResNet(num_classes=3, width=8, norm="batch"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fixed.modules())


def test_epsilon_matches_opacus_accountant(tmp_path):
    dm = SyntheticIdentityDataModule(n_identities=3, per_identity=40, image_size=16, batch_size=10)
    model = SplitClassifier(width=8, dp=DPSGD(noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-5))
    tr = _trainer(tmp_path, 2)
    tr.fit(model, dm)
    n = len(dm.members())
    q = 10 / n
    steps = 2 * (n // 10)
    acc = PRVAccountant()
    acc.history = [(1.1, q, steps)]
    expect = acc.get_epsilon(delta=1e-5)
    assert model.epsilon() == pytest.approx(expect, rel=1e-3)
    assert tr.callback_metrics["dp/epsilon"].item() == pytest.approx(expect, rel=1e-3)
    assert 0 < expect < 100


def test_target_epsilon_is_reached(tmp_path):
    dm = SyntheticIdentityDataModule(n_identities=3, per_identity=40, image_size=16, batch_size=10)
    model = SplitClassifier(width=8, dp=DPSGD(target_epsilon=4.0, delta=1e-5))
    _trainer(tmp_path, 2).fit(model, dm)
    assert model.epsilon() == pytest.approx(4.0, rel=0.05)


class PlainFaces(L.LightningDataModule):
    """Anyone's datamodule: no privgan flag, hook or base class."""

    def __init__(self, n: int = 60, batch_size: int = 6) -> None:
        super().__init__()
        self.n, self.batch_size = n, batch_size

    def setup(self, stage: str) -> None:
        g = torch.Generator().manual_seed(0)
        self.data = torch.utils.data.TensorDataset(torch.rand(self.n, 3, 16, 16, generator=g), torch.arange(self.n) % 3)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.data, batch_size=self.batch_size, shuffle=True)


def test_dp_on_any_lightning_datamodule_is_poisson_sampled_and_accounted(tmp_path):
    from opacus.data_loader import DPDataLoader

    dm, seen = PlainFaces(n=60, batch_size=6), []

    class Recording(SplitClassifier):
        def training_step(self, batch, batch_idx):
            seen.append(len(batch[1]))
            return super().training_step(batch, batch_idx)

    model = Recording(num_classes=3, width=8, dp=DPSGD(noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-5))
    tr = _trainer(tmp_path, 2)
    tr.fit(model, dm)
    # the loader the trainer actually iterated is Opacus's Poisson sampler, planned from the plain one
    assert isinstance(tr.train_dataloader, DPDataLoader)
    assert tr.train_dataloader.sample_rate == pytest.approx(6 / 60)
    assert len(seen) == 2 * 10 and len(set(seen)) > 1  # 10 steps an epoch, batch sizes vary (Poisson)
    acc = PRVAccountant()
    acc.history = [(1.1, 6 / 60, 2 * 10)]
    assert model.epsilon() == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-3)
    # the wrapping belongs to that fit: attached to a trainer without DP, the datamodule gives its plain loader
    plain = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    plain.fit(SplitClassifier(num_classes=3, width=8), dm)
    assert not isinstance(plain.train_dataloader, DPDataLoader)


def test_empty_poisson_batches_take_a_noise_only_step(tmp_path):
    """At a sample rate where most Poisson batches are empty, DP training neither crashes nor skips steps."""
    dm = PlainFaces(n=8, batch_size=1)  # q = 1/8: P(empty batch) = (7/8)^8 ≈ 34 %
    model = SplitClassifier(num_classes=3, width=8, dp=DPSGD(noise_multiplier=1.0, max_grad_norm=1.0))
    torch.manual_seed(3)
    before = [p.detach().clone() for p in model.parameters()]
    tr = _trainer(tmp_path, 3)
    tr.fit(model, dm)
    assert tr.global_step == 3 * 8 and len(model._dp.engine.accountant.history[0]) == 3
    assert model._dp.engine.accountant.history[0][2] == 3 * 8  # every step, empty or not, is accounted
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model._dp.grad_sample_module._module.parameters()))


def test_dp_without_a_datamodule_says_what_to_pass(tmp_path):
    x = torch.rand(8, 3, 16, 16)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(8, dtype=torch.long)), batch_size=4)
    model = SplitClassifier(num_classes=2, width=8, dp=DPSGD(noise_multiplier=1.0))
    with pytest.raises(DPConfigError, match="LightningDataModule"):
        _trainer(tmp_path, 1).fit(model, loader)


def test_dp_checkpoint_resumes_accounting(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    dm = SyntheticIdentityDataModule(n_identities=3, per_identity=40, image_size=16, batch_size=10)
    dp = DPSGD(noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-5)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True, save_on_train_epoch_end=True)
    tr = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path, callbacks=[ckpt])
    tr.fit(SplitClassifier(width=8, dp=dp), dm)
    one_epoch = tr.lightning_module.epsilon()
    # the checkpoint holds plain data only: it loads with torch's weights_only default
    loaded = SplitClassifier.load_from_checkpoint(tmp_path / "ck" / "last.ckpt")
    assert loaded.dp_config == dp and loaded.hparams.dp["noise_multiplier"] == 1.1
    model = SplitClassifier(width=8, dp=dp)
    tr2 = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                    enable_model_summary=False, default_root_dir=tmp_path, enable_checkpointing=False)
    tr2.fit(model, dm, ckpt_path=tmp_path / "ck" / "last.ckpt")
    n = len(dm.members())
    acc = PRVAccountant()
    acc.history = [(1.1, 10 / n, 2 * (n // 10))]
    assert model.epsilon() > one_epoch
    assert model.epsilon() == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-3)


def test_zero_noise_means_no_privacy(tmp_path):
    dm = SyntheticIdentityDataModule(n_identities=3, per_identity=20, image_size=16, batch_size=10)
    model = SplitClassifier(width=8, dp=DPSGD(noise_multiplier=0.0))
    _trainer(tmp_path, 1).fit(model, dm)
    assert model.epsilon() == float("inf")


def test_dp_from_a_dict_and_bad_keys():
    assert SplitClassifier(num_classes=2, dp={"noise_multiplier": 1.0}).dp_config == DPSGD(noise_multiplier=1.0)
    with pytest.raises(DPConfigError, match="valid keys"):
        SplitClassifier(num_classes=2, dp={"noise": 1.0})
