"""Callbacks on synthetic identities: noise must blunt inversion, failures warn, the curve fills, run() reproduces them."""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from privgan.attacks import run_attack
from privgan.callbacks import InversionAttack, MembershipAttack, PrivacyUtilityCurve
from privgan.data.synthetic import SyntheticIdentityDataModule
from privgan.modules import SplitClassifier
from privgan.reporting.points import load_curve
from privgan.targets.adapters import classifier_target, split_target
from privgan.targets.view import view_from

INVERSION = dict(n_targets=8, whitebox_steps=80, tv_weights=(0.0,), decoder_epochs=3, decoder_width=8, pair_far=0.05)


def _trainer(tmp_path, callbacks, epochs=2, **kw):
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, callbacks=callbacks, **kw)


def _inversion(**kw):
    return InversionAttack(every_n_epochs=kw.pop("every_n_epochs", 1), fail_on_error=kw.pop("fail_on_error", False),
                           config=INVERSION | kw)


def test_inversion_metrics_fall_with_noise(tmp_path):
    psnr = {}
    for sigma in (0.0, 8.0):
        dm = SyntheticIdentityDataModule(n_identities=4, per_identity=16, aux_images=64, image_size=16)
        model = SplitClassifier(width=8, split_at="stem", activation_noise=sigma)
        run = tmp_path / f"s{sigma}"
        _trainer(run, [_inversion(), PrivacyUtilityCurve()], epochs=1).fit(model, dm)
        (point,) = load_curve(run)
        assert math.isinf(point.epsilon) and point.delta is None
        psnr[sigma] = point.results["inversion"].signals["whitebox_tv0_psnr_db"].value
        assert (run / "inversion" / "epoch_000_gallery.png").exists() and (run / "inversion" / "epoch_000.json").exists()
    assert psnr[0.0] > psnr[8.0] + 3, psnr


def test_membership_callback_catches_memorisation_and_run_reproduces_it(tmp_path):
    """A planted leak (random labels, memorised) is found, and run() on the saved model gives the same numbers."""
    dm = SyntheticIdentityDataModule(n_identities=4, per_identity=40, image_size=16, random_labels=True, noise=0.3, batch_size=16)
    mia = MembershipAttack(every_n_epochs=30, config={"shadow_models": 2, "n_boot": 50})
    model = SplitClassifier(width=16, split_at="stage2", lr=3e-3, weight_decay=0.0, augment=False)
    tr = _trainer(tmp_path, [mia, PrivacyUtilityCurve()], epochs=30)
    tr.fit(model, dm)
    result = load_curve(tmp_path)[-1].results["membership"]
    assert result.signals["loss_auc"].value > 0.8 and result.signals["lira_offline_auc"].value > 0.7
    assert result.verdict == "leak" and mia.shadow_.epochs_ == 30
    assert (tmp_path / "membership" / "epoch_029_scores.csv").exists()
    tr.save_checkpoint(tmp_path / "m.ckpt")
    # the same attack without Lightning: a reloaded module, the datamodule's view, the same config
    loaded = SplitClassifier.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=False)
    again = run_attack("membership", classifier_target(loaded), view_from(dm), mia.run_config(29))
    for k in ("auc", "loss_auc", "lira_offline_auc"):
        assert again.signals[k].value == pytest.approx(result.signals[k].value, abs=1e-6), k


def test_inversion_run_reproduces_the_callback(tmp_path):
    dm = SyntheticIdentityDataModule(n_identities=4, per_identity=16, aux_images=64, image_size=16)
    inv = _inversion()
    model = SplitClassifier(width=8, split_at="stem", activation_noise=0.5)
    tr = _trainer(tmp_path, [inv, PrivacyUtilityCurve()], epochs=1)
    tr.fit(model, dm)
    tr.save_checkpoint(tmp_path / "m.ckpt")
    loaded = SplitClassifier.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=False)
    again = run_attack("inversion", split_target(loaded), view_from(dm), inv.config)
    cb = load_curve(tmp_path)[-1].results["inversion"]
    for k in ("whitebox_tv0_psnr_db", "decoder_psnr_db", "reid_top1"):
        assert again.signals[k].value == pytest.approx(cb.signals[k].value, abs=1e-3), k


def test_two_callbacks_of_one_class_keep_separate_state(tmp_path):
    dm = SyntheticIdentityDataModule(n_identities=4, per_identity=16, image_size=16)
    a = MembershipAttack(name="membership_a", config={"shadow_models": 2, "n_boot": 20})
    b = MembershipAttack(name="membership_b", every_n_epochs=2, config={"shadow_models": 0, "n_boot": 20, "seed": 1})
    assert a.state_key != b.state_key
    tr = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                   default_root_dir=tmp_path, callbacks=[a, b, PrivacyUtilityCurve()])
    tr.fit(SplitClassifier(width=8, split_at="stem"), dm)
    ckpt = torch.load(next((tmp_path / "checkpoints").glob("*.ckpt")), weights_only=False)
    slots = [v for k, v in ckpt["callbacks"].items() if k.startswith("MembershipAttack")]
    assert len(slots) == 2 and sum("shadow" in s for s in slots) == 1
    points = load_curve(tmp_path)
    assert set(points[0].results) == {"membership_a"} and set(points[1].results) == {"membership_a", "membership_b"}
    assert (tmp_path / "membership_a").is_dir() and (tmp_path / "membership_b").is_dir()


def test_an_attack_runs_once_per_epoch_even_when_time_stops_training(tmp_path):
    """A max_time stop used to run the attacks twice at the last epoch."""
    dm = SyntheticIdentityDataModule(n_identities=4, per_identity=16, image_size=16)
    mia = MembershipAttack(every_n_epochs=1, config={"shadow_models": 0, "n_boot": 20})
    tr = _trainer(tmp_path, [mia, PrivacyUtilityCurve()], epochs=1)
    tr.fit(SplitClassifier(width=8, split_at="stem"), dm)
    tr.should_stop = True
    mia.on_train_epoch_end(tr, tr.lightning_module)  # the same epoch end seen again
    assert len(load_curve(tmp_path)) == 1 and mia.last_step_run == tr.global_step


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
    inv, mia = _inversion(decoder=False), MembershipAttack(config={"shadow_models": 0, "n_boot": 20})
    _trainer(tmp_path, [inv, mia, PrivacyUtilityCurve(utility_key="train_loss")], epochs=1).fit(PlainSplit(), dm)
    (point,) = load_curve(tmp_path)
    assert "psnr_db" in point.results["inversion"].signals and "auc" in point.results["membership"].signals


def test_failing_attack_warns_and_training_goes_on(tmp_path):
    dm = SyntheticIdentityDataModule(n_identities=4, per_identity=8, image_size=16)
    inv = _inversion()
    tr = _trainer(tmp_path, [inv], epochs=2)
    with pytest.warns(UserWarning, match="InversionAttack failed"):
        tr.fit(PlainClassifier(), dm)
    assert tr.current_epoch == 2
    assert len(inv.failures) == 2 and "adapters.py" in inv.failures[0]["where"] and "split_layer" in inv.failures[0]["error"]


def test_failing_attack_can_stop_training(tmp_path):
    dm = SyntheticIdentityDataModule(n_identities=4, per_identity=8, image_size=16)

    class NoData(L.LightningDataModule):
        def train_dataloader(self):
            return dm.train_dataloader()

    dm.setup()
    with pytest.raises(TypeError, match="offers no photos"):
        _trainer(tmp_path, [MembershipAttack(fail_on_error=True, config={"shadow_models": 0})], epochs=1).fit(PlainSplit(), NoData())


def test_bad_callback_arguments():
    with pytest.raises(ValueError, match="every_n_epochs"):
        MembershipAttack(every_n_epochs=0)
    with pytest.raises(ValueError, match="whitebox=True, decoder=True or a prior"):
        InversionAttack(config={"whitebox": False, "decoder": False})
    with pytest.raises(TypeError, match="unknown config keys.*far"):
        InversionAttack(config={"far": 0.05})


def test_inversion_runs_on_a_dp_model(tmp_path):
    """White-box gradients through an Opacus GradSampleModule must not trip its hooks; δ reaches the curve."""
    from privgan.defences.dp import DPSGD

    dm = SyntheticIdentityDataModule(n_identities=3, per_identity=20, aux_images=32, image_size=16, batch_size=8)
    inv = _inversion(whitebox_steps=5, decoder_epochs=1, fail_on_error=True)
    model = SplitClassifier(width=8, split_at="stage1", dp=DPSGD(noise_multiplier=1.0, delta=1e-6))
    _trainer(tmp_path, [inv, PrivacyUtilityCurve()], epochs=1).fit(model, dm)
    (point,) = load_curve(tmp_path)
    assert "whitebox_tv0_psnr_db" in point.results["inversion"].signals
    assert point.delta == 1e-6 and 0 < point.epsilon < math.inf
    assert model._dp.grad_sample_module.hooks_enabled  # switched back on for training


def test_model_inversion_callback_writes_a_curve_point_that_run_reproduces(tmp_path):
    """ModelInversionAttack on privgan's split classifier: its Result is on the curve, and run() on the saved model agrees."""
    from privgan.callbacks import ModelInversionAttack

    dm = SyntheticIdentityDataModule(n_identities=4, per_identity=16, aux_images=64, image_size=16)
    config = {"prior_components": 32, "restarts": 2, "steps": 30, "n_gallery": 2}
    mi = ModelInversionAttack(every_n_epochs=1, fail_on_error=True, config=config)
    model = SplitClassifier(width=8, split_at="stem")
    tr = _trainer(tmp_path, [mi, PrivacyUtilityCurve(keys=["model_inversion/mi_top1"])], epochs=1)
    tr.fit(model, dm)
    r = load_curve(tmp_path)[-1].results["model_inversion"]
    assert r.signals["mi_top1"].chance == pytest.approx(1 / 4) and r.values["n_classes"] == 4
    assert (tmp_path / "model_inversion" / "epoch_000_gallery.png").exists()
    tr.save_checkpoint(tmp_path / "m.ckpt")
    loaded = SplitClassifier.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=False)
    again = run_attack("model_inversion", classifier_target(loaded), view_from(dm), mi.config)
    assert again.signals["mi_top1_restarts"].value == pytest.approx(r.signals["mi_top1_restarts"].value)
    assert again.values["confidence_mean"] == pytest.approx(r.values["confidence_mean"], abs=1e-4)
