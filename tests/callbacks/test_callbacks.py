"""Callbacks on synthetic identities: noise must blunt inversion, failures warn, the curve fills."""

import json
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from privgan.callbacks import InversionAttack, MembershipAttack, PrivacyUtilityCurve
from privgan.data.synthetic import SyntheticIdentityDataModule
from privgan.modules import SplitClassifier


def _trainer(tmp_path, callbacks, epochs=2):
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, callbacks=callbacks)


def _inversion(**kw):
    base = dict(every_n_epochs=1, n_targets=8, whitebox_steps=80, tv_weights=(0.0,), decoder_epochs=3,
                decoder_width=8, far=0.05, embedder="sface")
    return InversionAttack(**(base | kw))


def test_inversion_metrics_fall_with_noise(tmp_path):
    psnr = {}
    for sigma in (0.0, 8.0):
        dm = SyntheticIdentityDataModule(n_identities=4, per_identity=16, aux_images=64, image_size=16)
        inv = _inversion()
        model = SplitClassifier(width=8, split_at="stem", activation_noise=sigma)
        run = tmp_path / f"s{sigma}"
        _trainer(run, [inv, PrivacyUtilityCurve()], epochs=1).fit(model, dm)
        psnr[sigma] = inv.last_metrics["privacy/inversion_whitebox_tv0_psnr_db"]
        pts = json.loads((run / "curve.json").read_text())["points"]
        assert len(pts) == 1 and math.isinf(pts[0]["epsilon"])
        assert (run / "inversion" / "epoch_000.png").exists()
    assert psnr[0.0] > psnr[8.0] + 3, psnr


def test_membership_callback_catches_memorisation(tmp_path):
    dm = SyntheticIdentityDataModule(n_identities=4, per_identity=40, image_size=16, random_labels=True, noise=0.3, batch_size=16)
    mia = MembershipAttack(every_n_epochs=30, reference_models=2, n_boot=50)
    model = SplitClassifier(width=16, split_at="stage2", lr=3e-3, weight_decay=0.0, augment=False)
    _trainer(tmp_path, [mia, PrivacyUtilityCurve()], epochs=30).fit(model, dm)
    m = mia.last_metrics
    assert m["privacy/membership_loss_auc"] > 0.8
    assert m["privacy/membership_lira_offline_auc"] > 0.7
    assert mia.references_.epochs_ == 30
    assert (tmp_path / "membership" / "epoch_029.csv").exists()


class PlainClassifier(L.LightningModule):
    """A classifier written in plain Lightning style: no privgan base class, no split."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x):
        return self.head(torch.relu(self.enc(x)))

    def training_step(self, batch, _):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), 1e-3)


class PlainSplit(PlainClassifier):
    """The same model exposing its split point as ``client(x)``."""

    def client(self, x):
        return torch.relu(self.enc(x))


def test_callbacks_on_a_plain_lightning_module(tmp_path):
    dm = SyntheticIdentityDataModule(n_identities=4, per_identity=16, image_size=16)
    inv, mia = _inversion(decoder=False), MembershipAttack(reference_models=0, n_boot=20)
    _trainer(tmp_path, [inv, mia, PrivacyUtilityCurve(utility_key="train_loss")], epochs=1).fit(PlainSplit(), dm)
    assert "privacy/inversion_psnr_db" in inv.last_metrics
    assert "privacy/membership_auc" in mia.last_metrics


def test_failing_attack_warns_and_training_goes_on(tmp_path):
    dm = SyntheticIdentityDataModule(n_identities=4, per_identity=8, image_size=16)
    inv = _inversion()
    tr = _trainer(tmp_path, [inv], epochs=2)
    with pytest.warns(UserWarning, match="InversionAttack failed"):
        tr.fit(PlainClassifier(), dm)
    assert tr.current_epoch == 2 and inv.runs == 0
    assert len(inv.failures) == 2 and "adapters.py" in inv.failures[0]["where"] and "split_layer" in inv.failures[0]["error"]


def test_failing_attack_can_stop_training(tmp_path):
    dm = SyntheticIdentityDataModule(n_identities=4, per_identity=8, image_size=16)

    class NoData(L.LightningDataModule):
        def train_dataloader(self):
            return dm.train_dataloader()

    dm.setup()
    with pytest.raises(TypeError, match="members"):
        _trainer(tmp_path, [MembershipAttack(reference_models=0, fail_on_error=True)], epochs=1).fit(PlainSplit(), NoData())


def test_bad_callback_arguments():
    with pytest.raises(ValueError, match="every_n_epochs"):
        MembershipAttack(every_n_epochs=0)
    with pytest.raises(ValueError, match="whitebox=True or decoder=True"):
        InversionAttack(whitebox=False, decoder=False)


def test_reid_threshold_from_eval_lfw_json(tmp_path):
    from privgan.callbacks.inversion import threshold_from

    f = tmp_path / "lfw_sface.json"
    f.write_text(json.dumps({"threshold_at_far_0.001": 0.355}))
    assert threshold_from(str(f), 1e-3) == 0.355
    assert threshold_from(0.4, 1e-3) == 0.4 and threshold_from("0.3", 1e-3) == 0.3 and threshold_from(None, 1e-3) is None
    with pytest.raises(ValueError, match="threshold_at_far_0.01"):
        threshold_from(str(f), 1e-2)
    with pytest.raises(ValueError, match="missing.json"):
        threshold_from(str(tmp_path / "missing.json"), 1e-3)


def test_inversion_runs_on_a_dp_model(tmp_path):
    """White-box gradients through an Opacus GradSampleModule must not trip its hooks."""
    from privgan.defences.dp import DPSGD

    dm = SyntheticIdentityDataModule(n_identities=3, per_identity=20, aux_images=32, image_size=16, batch_size=8)
    inv = _inversion(whitebox_steps=5, decoder_epochs=1, fail_on_error=True)
    model = SplitClassifier(width=8, split_at="stage1", dp=DPSGD(noise_multiplier=1.0))
    _trainer(tmp_path, [inv], epochs=1).fit(model, dm)
    assert inv.runs == 1 and "privacy/inversion_whitebox_tv0_psnr_db" in inv.last_metrics
    assert model._dp.grad_sample_module.hooks_enabled  # switched back on for training
