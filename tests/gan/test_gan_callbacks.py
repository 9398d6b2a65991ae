"""Identity-match and GAN-membership callbacks inside real Trainers on LFW faces; the GAN recipes parse."""

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from privgan.callbacks import PrivacyUtilityCurve
from privgan.callbacks.gan_membership import GanMembershipAttack
from privgan.callbacks.identity_match import IdentityMatchAttack
from privgan.data.gan_faces import GanFaceDataModule
from privgan.defences.dp import DPSGD
from privgan.logging.local_files import read_csv
from privgan.modules.gan import GAN
from tests.gan import one_thread

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("privacy/identity_auc", "privacy/logan_auc", "privacy/ganleaks_pixel_auc", "privacy/ganleaks_embed_auc")


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _trainer(tmp_path, callbacks, epochs=2):
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, callbacks=callbacks)


def _data(tree, **kw):
    return GanFaceDataModule(**({"root": str(tree), "n_member_identities": 2, "n_nonmember_identities": 2, "train_images": 4,
                                 "reference_images": 3, "image_size": 32, "batch_size": 4} | kw))


def _gan(**kw):
    return GAN(**({"image_size": 32, "latent_dim": 16, "g_width": 8, "d_width": 8} | kw))


def _identity(**kw):
    return IdentityMatchAttack(**({"n_samples": 12, "k": 2, "n_boot": 20, "n_gallery": 3} | kw))


@pytest.mark.lfw
def test_callbacks_attack_a_training_gan_and_write_their_files(small_face_tree, tmp_path):
    ident = _identity(log_gallery=True)
    mia = GanMembershipAttack(n_samples=12, max_candidates=6, n_boot=20)
    curve = PrivacyUtilityCurve(utility_key="utility/fd_face", privacy_keys=KEYS)
    _trainer(tmp_path, [ident, mia, curve]).fit(_gan(), _data(small_face_tree))
    m = ident.last_metrics
    for key in ("privacy/identity_auc", "privacy/identity_auc_ci_low", "privacy/identity_tpr_at_fpr_0.01",
                "privacy/identity_tpr_at_fpr_0.1", "privacy/identity_max_auc", "privacy/identity_count_above_threshold",
                "privacy/identity_n_identities", "privacy/identity_members_p_median", "utility/fd_face"):
        assert key in m, key
    assert m["privacy/identity_n_identities"] == 4 and math.isfinite(m["utility/fd_face"])
    assert ident.runs == 2 and mia.runs == 2
    for key in ("privacy/logan_auc", "privacy/ganleaks_pixel_auc", "privacy/ganleaks_embed_auc",
                "privacy/logan_tpr_at_fpr_0.01", "privacy/ganleaks_pixel_auc_ci_high", "privacy/logan_n_members"):
        assert key in mia.last_metrics, key
    assert mia.last_metrics["privacy/logan_n_members"] == 6
    rows = read_csv(tmp_path / "identity" / "epoch_001_scores.csv")
    assert len(rows) == 4 and {r["group"] for r in rows} == {"member", "nonmember"}
    assert {"topk_mean", "p_value_topk_mean", "count_above", "n_train"} <= set(rows[0])
    for f in ("identity/epoch_001_gallery.png", "identity/epoch_001.json", "gan_membership/epoch_001.csv",
              "gan_membership/epoch_001_roc.png", "curve.csv", "curve.png", "manifest.json"):
        assert (tmp_path / f).exists(), f
    pts = json.loads((tmp_path / "curve.json").read_text())["points"]
    assert [p["epoch"] for p in pts] == [0, 1]
    assert all(math.isfinite(p["utility"]) and math.isinf(p["epsilon"]) for p in pts)
    assert all(k in pts[-1] for k in KEYS)


@pytest.mark.lfw
def test_dp_gan_curve_carries_epsilon_and_overrepresented_groups(small_face_tree, tmp_path):
    dm = _data(small_face_tree, design="overrepresented", n_overrepresented=1, over_train_images=5, n_member_identities=3,
               n_nonmember_identities=3, train_images=1, reference_images=1)
    ident = _identity(fd=False)
    curve = PrivacyUtilityCurve(utility_key="utility/fd_face", privacy_keys=KEYS)
    model = _gan(dp=DPSGD(noise_multiplier=1.0))
    _trainer(tmp_path, [ident, curve], epochs=1).fit(model, dm)
    pts = json.loads((tmp_path / "curve.json").read_text())["points"]
    assert len(pts) == 1 and 0 < pts[0]["epsilon"] == pytest.approx(model.epsilon())
    assert "utility/fd_face" not in ident.last_metrics
    assert {"privacy/identity_over_auc", "privacy/identity_regular_auc"} <= set(ident.last_metrics)
    groups = [r["group"] for r in read_csv(tmp_path / "identity" / "epoch_000_scores.csv")]
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
    ident = _identity(fd=False, n_gallery=0)
    tr = _trainer(tmp_path / "a", [ident], epochs=1)
    with pytest.warns(UserWarning, match="has no sample"):
        tr.fit(PlainGenerator(), _data(small_face_tree))
    assert tr.current_epoch == 1 and ident.runs == 0
    ident = _identity(fd=False, n_gallery=0, sample_fn=_plain_sample)
    mia = GanMembershipAttack(n_samples=8, max_candidates=4, n_boot=10, ganleaks_embed=False, sample_fn=_plain_sample)
    with pytest.warns(UserWarning, match="LOGAN skipped"):
        _trainer(tmp_path / "b", [ident, mia], epochs=1).fit(PlainGenerator(), _data(small_face_tree))
    assert "privacy/identity_auc" in ident.last_metrics
    assert "privacy/ganleaks_pixel_auc" in mia.last_metrics and "privacy/logan_auc" not in mia.last_metrics


def test_callback_arguments_are_checked():
    with pytest.raises(ValueError, match="score"):
        IdentityMatchAttack(score="median")
    with pytest.raises(ValueError, match="at least one"):
        GanMembershipAttack(logan=False, ganleaks_pixel=False, ganleaks_embed=False)


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
