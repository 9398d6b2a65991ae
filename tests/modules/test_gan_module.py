"""The GAN LightningModule: trains with and without DP, samples, EMA, export, ε accounting and resume."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from opacus.accountants import PRVAccountant
from opacus.validators import ModuleValidator
from torch.utils.data import DataLoader, TensorDataset

from privgan.data.synthetic import SyntheticIdentityDataModule
from privgan.defences.dp import DPSGD, DPConfigError
from privgan.models.gan import Discriminator, Generator
from privgan.modules.gan import GAN
from tests.lfw_helpers import one_thread


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _trainer(tmp_path, epochs=1, **kw):
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, **kw)


def _gan(**kw):
    return GAN(**({"image_size": 32, "latent_dim": 16, "g_width": 8, "d_width": 8} | kw))


def _data(per_identity=40, batch_size=4):
    # SyntheticIdentityDataModule keeps half of the 2 x per_identity images as training members
    return SyntheticIdentityDataModule(n_identities=2, per_identity=per_identity, image_size=32, batch_size=batch_size)


def test_networks_for_32_and_64_px():
    for size in (32, 64):
        g, d = Generator(image_size=size, latent_dim=8, width=4), Discriminator(image_size=size, width=4)
        x = g(torch.randn(3, 8))
        assert x.shape == (3, 3, size, size) and x.abs().max() <= 1
        assert d(x).shape == (3,)
    with pytest.raises(ValueError, match="image_size"):
        Generator(image_size=48)
    # Opacus refuses spectral norm ("trainable layer with buffers"); GroupNorm and no norm pass
    from opacus import GradSampleModule

    with pytest.raises(NotImplementedError, match="buffers"):
        GradSampleModule(Discriminator(width=4, norm="spectral"))
    for norm in ("group", "none"):
        assert not ModuleValidator.validate(Discriminator(width=4, norm=norm), strict=False)


def test_trains_samples_keeps_an_ema_and_exports(tmp_path):
    dm = _data()
    m = _gan()
    tr = _trainer(tmp_path, limit_train_batches=3)
    tr.fit(m, dm)
    assert tr.global_step == 6  # one D and one G optimizer step per batch
    assert {"train/loss_d", "train/loss_g", "train/d_real"} <= set(tr.callback_metrics)
    assert m.epsilon() == float("inf") and m.hparams.d_norm == "spectral"
    x = m.sample(5, generator=torch.Generator().manual_seed(1))
    assert x.shape == (5, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, m.sample(5, generator=torch.Generator().manual_seed(1)))
    ema, raw = dict(m.generator_ema.named_parameters()), dict(m.generator.named_parameters())
    assert any(not torch.allclose(ema[k], raw[k]) for k in raw)
    assert int(m.ema_updates) == 3
    assert m.discriminator_scores(dm.members().images[:7]).shape == (7,)
    # torch.export program of the EMA generator (the default): same images for the same z, any batch size
    import json

    extra = {"privgan.json": ""}
    program = torch.export.load(str(m.export_generator(tmp_path / "g.pt2")), extra_files=extra)
    assert json.loads(extra["privgan.json"]) == {"latent_dim": 16, "image_size": 32, "output_range": "unit"}
    z = m.sample_latent(4, torch.Generator().manual_seed(2))
    assert torch.allclose(program.module()(z), m.generate(z), atol=1e-6)
    assert torch.allclose(program.module()(z), m.sample(4, torch.Generator().manual_seed(2)), atol=1e-6)
    z7 = m.sample_latent(7, torch.Generator().manual_seed(3))
    assert torch.allclose(program.module()(z7), m.generate(z7), atol=1e-6)
    assert torch.allclose(torch.export.load(str(m.export_generator(tmp_path / "g_noext"))).module()(z), m.generate(z), atol=1e-6)
    # TorchScript is still written for readers that need it (a .pt path, or format="torchscript")
    loaded = torch.jit.load(str(m.export_generator(tmp_path / "g.pt")))
    assert torch.allclose(loaded(z), m.generate(z), atol=1e-6)
    with pytest.raises(ValueError, match="format"):
        m.export_generator(tmp_path / "g.onnx", format="onnx")


def test_r1_and_non_saturating_loss(tmp_path):
    tr = _trainer(tmp_path, limit_train_batches=2)
    tr.fit(_gan(loss="non_saturating", r1_gamma=1.0), _data())
    assert tr.callback_metrics["train/r1"] >= 0


def test_config_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(DPConfigError, match="spectral"):
        _gan(dp=DPSGD(noise_multiplier=1.0), d_norm="spectral")
    with pytest.raises(DPConfigError, match="r1_gamma"):
        _gan(dp=DPSGD(noise_multiplier=1.0), r1_gamma=1.0)
    with pytest.raises(ValueError, match="loss"):
        _gan(loss="wasserstein")

    with pytest.raises(DPConfigError, match="LightningDataModule"):  # a bare loader cannot be Poisson-sampled
        _trainer(tmp_path).fit(_gan(dp=DPSGD(noise_multiplier=1.0)), DataLoader(TensorDataset(torch.rand(8, 3, 32, 32)), batch_size=4))


def test_dp_on_a_plain_datamodule_trains_on_poisson_batches(tmp_path):
    from opacus.data_loader import DPDataLoader

    class Plain(L.LightningDataModule):  # no privgan flag or hook
        def train_dataloader(self):
            return DataLoader(TensorDataset(torch.rand(40, 3, 32, 32)), batch_size=4)

    m = _gan(dp=DPSGD(noise_multiplier=1.0))
    tr = _trainer(tmp_path, epochs=2)
    tr.fit(m, Plain())
    assert isinstance(tr.train_dataloader, DPDataLoader)
    assert m.epsilon() == pytest.approx(_prv_epsilon(1.0, 0.1, 20), rel=1e-3)


def test_nan_loss_names_the_step(tmp_path):
    class NanFaces(L.LightningDataModule):
        def train_dataloader(self):
            return DataLoader(TensorDataset(torch.full((8, 3, 32, 32), float("nan"))), batch_size=4)

    with pytest.raises(FloatingPointError, match="discriminator loss is nan at global step 0"):
        _trainer(tmp_path).fit(_gan(), NanFaces())


def _prv_epsilon(sigma, q, steps, delta=1e-5):
    acc = PRVAccountant()
    acc.history = [(sigma, q, steps)]
    return acc.get_epsilon(delta=delta)


def test_dp_epsilon_matches_opacus_accountant(tmp_path):
    dm = _data(per_identity=40, batch_size=4)  # 40 members, 10 Poisson batches an epoch, q = 0.1
    m = _gan(dp=DPSGD(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5))
    tr = _trainer(tmp_path, epochs=2)
    tr.fit(m, dm)
    expect = _prv_epsilon(1.0, 0.1, 20)
    assert 0 < m.epsilon() == pytest.approx(expect, rel=1e-3)
    assert tr.callback_metrics["dp/epsilon"].item() == pytest.approx(expect, rel=1e-3)
    assert m.hparams.d_norm == "group"
    # only the discriminator is private: the generator never carries per-sample gradients
    assert all(getattr(p, "grad_sample", None) is None for p in m.generator.parameters())
    x = m.sample(3)
    assert x.shape == (3, 3, 32, 32)


def test_dp_steps_on_empty_poisson_batches(tmp_path):
    """8 members, batch 1: about a third of Poisson batches are empty; each still counts as a DP step."""
    sizes = []

    class Recording(GAN):
        def training_step(self, batch, batch_idx):
            sizes.append(len(batch[0]))
            return super().training_step(batch, batch_idx)

    m = Recording(image_size=32, latent_dim=16, g_width=8, d_width=8, dp=DPSGD(noise_multiplier=1.0))
    _trainer(tmp_path, epochs=2).fit(m, _data(per_identity=8, batch_size=1))
    assert len(sizes) == 16 and 0 in sizes
    assert m.epsilon() == pytest.approx(_prv_epsilon(1.0, 1 / 8, 16), rel=1e-3)


def test_dp_resume_keeps_the_epsilon_history(tmp_path):
    ck = tmp_path / "ck"
    dp = DPSGD(noise_multiplier=1.0, delta=1e-5)
    first = _gan(dp=dp)
    L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
              default_root_dir=tmp_path, callbacks=[ModelCheckpoint(dirpath=ck, save_last=True, save_on_train_epoch_end=True)]
              ).fit(first, _data())
    assert first.epsilon() == pytest.approx(_prv_epsilon(1.0, 0.1, 10), rel=1e-3)
    resumed = _gan(dp=dp)
    _trainer(tmp_path, epochs=2).fit(resumed, _data(), ckpt_path=str(ck / "last.ckpt"))
    assert resumed.epsilon() == pytest.approx(_prv_epsilon(1.0, 0.1, 20), rel=1e-3)
    assert int(resumed.ema_updates) > int(first.ema_updates)
    # the checkpoint holds plain hyper-parameters: it loads with weights_only=True and rebuilds the DP config
    again = GAN.load_from_checkpoint(str(ck / "last.ckpt"), weights_only=True)
    assert again.dp_config == dp


def test_clipping_without_noise_reports_infinite_epsilon(tmp_path):
    m = _gan(dp=DPSGD(noise_multiplier=0.0))
    tr = _trainer(tmp_path, limit_train_batches=2)
    tr.fit(m, _data())
    assert m.epsilon() == float("inf") and tr.callback_metrics["dp/epsilon"].item() == float("inf")


def test_n_critic_steps_the_generator_every_n_batches(tmp_path):
    m = _gan(n_critic=2)
    _trainer(tmp_path, limit_train_batches=6).fit(m, _data())
    opt_g, opt_d = m.optimizers()
    steps = lambda opt: int(next(iter(opt.optimizer.state.values()))["step"])  # noqa: E731
    assert (steps(opt_d), steps(opt_g)) == (6, 3)
    with pytest.raises(ValueError, match="n_critic"):
        _gan(n_critic=0)


def test_n_critic_counts_d_steps_across_epochs_shorter_than_n_critic_and_a_resume_keeps_the_count(tmp_path):
    """Person-level DP at q = 0.5 gives 2 batches an epoch: with n_critic = 4, G must still step every 4th D step."""
    m = _gan(n_critic=4)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
              default_root_dir=tmp_path, limit_train_batches=2, callbacks=[ckpt]).fit(m, _data())
    steps = lambda model, i: int(next(iter(model.optimizers()[i].optimizer.state.values()))["step"])  # noqa: E731
    assert (m.d_steps, steps(m, 1), steps(m, 0)) == (6, 6, 1)  # D 6 steps, G once (at D step 4)
    resumed = _gan(n_critic=4)
    _trainer(tmp_path, epochs=5, limit_train_batches=2).fit(resumed, _data(), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert (resumed.d_steps, steps(resumed, 1), steps(resumed, 0)) == (10, 10, 2)  # G again at D step 8, not at 4 + 6


def test_person_level_dp_on_the_discriminator(tmp_path):
    """dp.unit: identity on D: people drawn whole, fakes each their own unit, ε per person from the accountant."""
    from privgan.defences.identity_dp import IdentityDPOptimizer, identity_epsilon

    m = _gan(dp=DPSGD(noise_multiplier=1.0, unit="identity", identities_per_step=1.0, accountant="rdp"))
    tr = _trainer(tmp_path, epochs=2)
    tr.fit(m, _data())
    assert isinstance(m._dp.optimizer, IdentityDPOptimizer) and m._dp.sample_rate == pytest.approx(0.5)
    assert float(tr.callback_metrics["dp/epsilon_identity"]) == pytest.approx(identity_epsilon(1.0, 0.5, 4, 1e-5, "rdp"),
                                                                              rel=1e-6)


def test_a_spectral_norm_gan_pickles_with_its_weights_and_norm_state_for_ddp_spawn():
    """ddp_spawn pickles the module; torch refuses to pickle spectral-norm parametrizations, so D pickles as settings + state."""
    import pickle

    gan = GAN(image_size=32, latent_dim=8, g_width=4, d_width=4)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    gan.discriminator(x)  # one training-mode pass moves the power-iteration vectors away from their start
    gan.eval()
    back = pickle.loads(pickle.dumps(gan))
    assert back.hparams.d_norm == "spectral" and not back.discriminator.training
    assert torch.equal(back.discriminator(x), gan.discriminator(x))
    for (k, a), (_, b) in zip(gan.discriminator.state_dict().items(), back.discriminator.state_dict().items()):
        assert torch.equal(a, b), k
