"""Identity-match and GAN-membership callbacks inside real Trainers on LFW faces; run() on the checkpoint
reproduces them; the GAN recipes parse."""

import csv
import math
import os
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from privgan.attacks import get_attack, run_attack
from privgan.callbacks import PrivacyUtilityCurve
from privgan.callbacks.base import _SHARED_BANKS
from privgan.callbacks.gan_membership import GanMembershipAttack
from privgan.callbacks.identity_match import IdentityMatchAttack
from privgan.data.gan_faces import GanFaceDataModule
from privgan.defences.dp import DPSGD
from privgan.modules.gan import GAN
from privgan.reporting.local_files import read_csv
from privgan.reporting.points import load_curve
from privgan.targets.adapters import gan_target
from privgan.targets.view import view_from
from tests.lfw_helpers import one_thread

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("identity_match/auc", "gan_membership/logan_auc", "gan_membership/ganleaks_pixel_auc",
        "gan_membership/ganleaks_embed_auc")
IDENTITY = {"n_samples": 12, "k": 2, "n_boot": 20, "n_gallery": 3}
GAN_MIA = {"n_samples": 12, "max_candidates": 6, "n_boot": 20}


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _trainer(tmp_path, callbacks, epochs=2, logger=False):
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=logger, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, callbacks=callbacks)


def _data(tree, **kw):
    return GanFaceDataModule(**({"root": str(tree), "n_member_identities": 2, "n_nonmember_identities": 2, "train_images": 4,
                                 "reference_images": 3, "image_size": 32, "batch_size": 4} | kw))


GAN_KW = {"image_size": 32, "latent_dim": 16, "g_width": 8, "d_width": 8}


def _gan(**kw):
    return GAN(**(GAN_KW | kw))


def _identity(**kw):
    config = IDENTITY | kw.pop("config", {})
    return IdentityMatchAttack(config=config, **kw)


class CountingGAN(GAN):
    """privgan's GAN, counting how often an attack asks it for samples."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.sample_calls = 0

    def sample(self, n, generator=None):
        self.sample_calls += 1
        return super().sample(n, generator)


@pytest.fixture(scope="module")
def trained(small_face_tree, tmp_path_factory):
    """One 2-epoch run of a tiny GAN with both GAN attack callbacks, a curve and a CSV logger, then a checkpoint."""
    root = tmp_path_factory.mktemp("gan_run")
    dm = _data(small_face_tree)
    model = CountingGAN(**GAN_KW)
    ident = _identity(log_gallery=True)
    mia = GanMembershipAttack(config=GAN_MIA)
    curve = PrivacyUtilityCurve(utility_key="utility/fd_face", keys=KEYS)
    tr = _trainer(root, [ident, mia, curve], logger=CSVLogger(root, name="csv", version=0))
    # the conftest's function-scoped isolation (aligned-face cache, W&B offline) is not active in a module fixture
    with pytest.MonkeyPatch.context() as mp, one_thread():
        if "PRIVGAN_CACHE" not in os.environ or os.environ.get("PRIVGAN_TEST_SHARED_CACHE") != "1":
            mp.setenv("PRIVGAN_CACHE", str(tmp_path_factory.getbasetemp() / "privgan_cache"))
        mp.setenv("WANDB_MODE", "offline")
        tr.fit(model, dm)
    tr.save_checkpoint(root / "gan.ckpt")
    return SimpleNamespace(root=root, dm=dm, model=model, ident=ident, mia=mia, curve=curve, trainer=tr, tree=small_face_tree)


@pytest.mark.lfw
def test_callbacks_attack_a_training_gan_and_write_their_files(trained):
    ident, mia, root = trained.ident.last_result, trained.mia.last_result, trained.root
    assert trained.ident.failures == [] and trained.mia.failures == []
    for key in ("auc", "tpr_at_fpr_0.01", "tpr_at_fpr_0.1", "max_auc", "topk_mean_auc", "count_above_auc"):
        assert key in ident.signals, key
    assert ident.signals["auc"].ci is not None and ident.signals["auc"].chance == 0.5
    for key in ("n_identities", "n_members", "members_p_median", "members_p_min", "smallest_possible_p", "verify_threshold",
                "samples_matching_members", "samples_matching_nonmembers", "verify_share", "verify_share_real", "fd_face"):
        assert key in ident.values, key
    assert ident.values["n_identities"] == 4 and math.isfinite(ident.values["fd_face"])
    for key in ("logan_auc", "ganleaks_pixel_auc", "ganleaks_embed_auc", "logan_tpr_at_fpr_0.01", "auc"):
        assert key in mia.signals, key
    assert mia.signals["ganleaks_pixel_auc"].ci[1] >= mia.signals["ganleaks_pixel_auc"].value
    assert mia.values["n_members"] == 6 and mia.values["n_nonmembers"] == 6
    # the headline is the best sub-attack's AUC, under its plain name
    assert mia.signals["auc"] == mia.signals[f"{mia.best}_auc"]
    assert mia.best == max(("logan", "ganleaks_pixel", "ganleaks_embed"), key=lambda s: mia.signals[f"{s}_auc"].value)
    rows = read_csv(root / "identity_match" / "epoch_001_rows.csv")
    assert len(rows) == 4 and {r["group"] for r in rows} == {"member", "nonmember"}
    assert {"topk_mean", "p_value_topk_mean", "count_above", "n_train"} <= set(rows[0])
    for f in ("identity_match/epoch_001_gallery.png", "identity_match/epoch_001.json", "gan_membership/epoch_001_scores.csv",
              "gan_membership/epoch_001_roc.png", "gan_membership/epoch_000.json", "curve.csv", "curve.json", "curve.png",
              "manifest.json"):
        assert (root / f).exists(), f
    # one point per attacked epoch, each holding both Results; GAN utility from the identity-match Result's fd_face
    pts = load_curve(root)
    assert [p.epoch for p in pts] == [0, 1]
    assert all(set(p.results) == {"identity_match", "gan_membership"} for p in pts)
    assert all(math.isfinite(p.utility) and math.isinf(p.epsilon) and p.delta is None for p in pts)
    assert not pts[-1].utility_higher_is_better and pts[-1].utility == ident.values["fd_face"]
    assert all(pts[-1].signal(k) is not None for k in KEYS)
    # flat logger keys privacy/<name>_<signal>
    with open(root / "csv" / "version_0" / "metrics.csv") as f:
        header = next(csv.reader(f))
    for key in ("privacy/identity_match_auc", "privacy/identity_match_auc_ci_low", "privacy/identity_match_fd_face",
                "privacy/gan_membership_logan_auc", "privacy/gan_membership_ganleaks_pixel_auc",
                "privacy/gan_membership_n_members"):
        assert key in header, key


@pytest.mark.lfw
def test_gan_callbacks_share_one_sample_bank_per_step(trained):
    """Both callbacks share one sample bank at a step: the generator is sampled once per step, not once per attack."""
    step, banks = _SHARED_BANKS[trained.model]
    assert step == trained.trainer.global_step and len(banks) == 1  # both sample the module the same way
    (bank,) = banks.values()
    assert trained.model.sample_calls == 2  # two attacked epochs; 4 if each callback drew its own samples
    assert ("samples", IDENTITY["n_samples"], 0) in bank
    assert sum(k[0] == "embeddings" for k in bank) == 1  # one SFace embedding of the samples, shared


class _AttrGAN(L.LightningModule):
    """A foreign GAN reached through attributes only: no sample(), no discriminator_scores()."""

    def __init__(self):
        super().__init__()
        self.save_hyperparameters({"latent_dim": 4})
        self.generator = nn.Sequential(nn.Linear(4, 3 * 8 * 8), nn.Tanh(), nn.Unflatten(1, (3, 8, 8)))
        self.discriminator = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 1))


def test_gan_callbacks_sharing_a_target_keep_their_own_discriminator():
    module, trainer = _AttrGAN(), L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    ident = IdentityMatchAttack(generator_attr="generator")
    mia = GanMembershipAttack(generator_attr="generator", discriminator_attr="discriminator")
    assert mia.target(module).discriminator_scores is not None  # alone it reaches the discriminator
    first = ident.target_at(trainer, module)
    second = mia.target_at(trainer, module)
    assert second.discriminator_scores is not None and first.discriminator_scores is None
    assert second.bank is first.bank  # samples still shared


@pytest.mark.lfw
def test_run_attack_on_the_checkpoint_reproduces_the_callbacks(trained):
    """Without Lightning: reload the checkpoint, rebuild the view from the run's manifest, run the registered attacks.

    Same seed, same samples, same photos: the numbers are deterministic on CPU, so they must
    match the callbacks' last curve point to 1e-6 (no CI slack needed).
    """
    loaded = GAN.load_from_checkpoint(trained.root / "gan.ckpt", weights_only=False)
    dm = _data(trained.tree, manifest=str(trained.root / "manifest.json"))
    dm.setup("fit")
    point = load_curve(trained.root)[-1]
    checks = {trained.ident: ("auc", "max_auc", "topk_mean_auc", "count_above_auc", "tpr_at_fpr_0.1"),
              trained.mia: ("auc", "logan_auc", "ganleaks_pixel_auc", "ganleaks_embed_auc")}
    for cb, signals in checks.items():
        view = view_from(dm, needs=get_attack(cb.attack).needs, image_size=cb.image_size)
        again = run_attack(cb.attack, gan_target(loaded), view, cb.config)
        saved = point.results[cb.name]
        assert again.best == saved.best and again.verdict == saved.verdict
        for k in signals:
            assert again.signals[k].value == pytest.approx(saved.signals[k].value, abs=1e-6), (cb.name, k)
            assert again.signals[k].ci == pytest.approx(saved.signals[k].ci, abs=1e-6), (cb.name, k)
        for k in saved.values:
            assert again.values[k] == pytest.approx(saved.values[k], rel=1e-6, abs=1e-6, nan_ok=True), (cb.name, k)
        # below the coarse AUCs of 4 identities / 12 photos: every continuous per-item score matches too
        assert cb.last_result.signals == saved.signals
        for name, (scores, labels) in cb.last_result.scores.items():
            assert torch.equal(again.scores[name][1], labels)
            assert torch.allclose(again.scores[name][0], scores, atol=1e-6), (cb.name, name)
        for a, b in zip(again.rows, cb.last_result.rows, strict=True):  # identity-match rows: scores and p-values
            assert a.keys() == b.keys()
            for k, v in b.items():
                assert a[k] == (pytest.approx(v, abs=1e-6, nan_ok=True) if isinstance(v, float) else v), (cb.name, k)


@pytest.mark.lfw
def test_dp_gan_curve_carries_epsilon_delta_and_overrepresented_groups(small_face_tree, tmp_path):
    dm = _data(small_face_tree, design="overrepresented", n_overrepresented=1, over_train_images=5, n_member_identities=3,
               n_nonmember_identities=3, train_images=1, reference_images=1)
    ident = _identity(config={"fd": False})
    curve = PrivacyUtilityCurve(utility_key="utility/fd_face", keys=KEYS)
    model = _gan(dp=DPSGD(noise_multiplier=1.0, delta=1e-6))
    _trainer(tmp_path, [ident, curve], epochs=1).fit(model, dm)
    (pt,) = load_curve(tmp_path)
    assert 0 < pt.epsilon == pytest.approx(model.epsilon()) and pt.delta == pytest.approx(1e-6)
    assert "fd_face" not in ident.last_result.values and math.isnan(pt.utility)
    assert {"over_auc", "regular_auc"} <= set(ident.last_result.signals)
    groups = [r["group"] for r in read_csv(tmp_path / "identity_match" / "epoch_000_rows.csv")]
    assert groups.count("overrepresented") == 1 and groups.count("nonmember") == 3


class PlainGenerator(L.LightningModule):
    """A generative model in plain Lightning style: no sample(), no discriminator."""

    def __init__(self):
        super().__init__()
        self.g = nn.Sequential(nn.Linear(8, 3 * 32 * 32), nn.Sigmoid())

    def training_step(self, batch, _):
        x = batch[0]
        return ((self.g(torch.randn(len(x), 8)).view_as(x) - x) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), 1e-3)


def _plain_sample(module, n, generator):
    return module.g(torch.randn(n, 8, generator=generator, device=generator.device)).view(n, 3, 32, 32)


@pytest.mark.lfw
def test_modules_without_sample_warn_or_use_sample_fn(small_face_tree, tmp_path):
    ident = _identity(config={"fd": False, "n_gallery": 0})
    tr = _trainer(tmp_path / "a", [ident], epochs=1)
    with pytest.warns(UserWarning, match="has no sample"):
        tr.fit(PlainGenerator(), _data(small_face_tree))
    assert tr.current_epoch == 1 and ident.last_result is None and len(ident.failures) == 1
    ident = _identity(config={"fd": False, "n_gallery": 0}, sample_fn=_plain_sample)
    mia = GanMembershipAttack(config={"n_samples": 8, "max_candidates": 4, "n_boot": 10, "ganleaks_embed": False},
                              sample_fn=_plain_sample)
    _trainer(tmp_path / "b", [ident, mia], epochs=1).fit(PlainGenerator(), _data(small_face_tree))
    assert "auc" in ident.last_result.signals
    assert "ganleaks_pixel_auc" in mia.last_result.signals and "logan_auc" not in mia.last_result.signals
    assert any("LOGAN skipped" in n for n in mia.last_result.notes), mia.last_result.notes


def test_attack_configs_are_checked():
    with pytest.raises(ValueError, match="score"):
        IdentityMatchAttack(config={"score": "median"})
    with pytest.raises(ValueError, match="at least one"):
        GanMembershipAttack(config={"logan": False, "ganleaks_pixel": False, "ganleaks_embed": False})
    with pytest.raises(TypeError, match="verify_far.*verify_pair_far"):  # the old name, with the valid ones listed
        IdentityMatchAttack(config={"verify_far": 1e-3})
    assert IdentityMatchAttack(config={"verify_pair_far": 0.05}).config.verify_pair_far == 0.05


@pytest.mark.parametrize("extra", [None, "gan_lfw_dp.yaml", "gan_lfw_overrepresented.yaml"])
def test_recipes_build_their_objects(extra, tmp_path):
    """Each GAN recipe (alone or as an overlay) instantiates through privgan's LightningCLI."""
    from privgan.cli import PrivganCLI

    args = ["--config", str(ROOT / "recipes" / "gan_lfw.yaml")]
    if extra:
        args += ["--config", str(ROOT / "recipes" / extra)]
    cli = PrivganCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                     args=args + [f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert isinstance(cli.model, GAN) and isinstance(cli.datamodule, GanFaceDataModule)
    kinds = {type(cb).__name__ for cb in cli.trainer.callbacks}
    assert {"IdentityMatchAttack", "GanMembershipAttack", "PrivacyUtilityCurve", "ModelCheckpoint"} <= kinds
    curve = next(cb for cb in cli.trainer.callbacks if isinstance(cb, PrivacyUtilityCurve))
    assert curve.utility_key == "utility/fd_face"
    if extra == "gan_lfw_dp.yaml":
        assert cli.model.dp_config is not None and cli.model.hparams.d_norm == "group"
    else:
        assert cli.model.dp_config is None and cli.model.hparams.d_norm == "spectral"
    if extra == "gan_lfw_overrepresented.yaml":
        assert cli.datamodule.design == "overrepresented"
