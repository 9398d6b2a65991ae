"""Asynchronous attacks: the same Results at the same steps as synchronous ones, training untouched, nothing lost on resume."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from privgan.callbacks import InversionAttack, PrivacyUtilityCurve
from privgan.data.synthetic import SyntheticIdentityDataModule
from privgan.modules import SplitClassifier
from privgan.reporting.points import load_curve

CONFIG = dict(n_targets=8, whitebox_steps=40, tv_weights=(0.0,), decoder_epochs=3, decoder_width=8, pair_far=0.05,
              n_gallery=0, linkage=True)


def _fit(root, asynchronous: bool, callbacks=(), epochs: int = 2):
    torch.manual_seed(0)
    dm = SyntheticIdentityDataModule(n_identities=4, per_identity=16, aux_images=64, image_size=16)
    model = SplitClassifier(width=8, split_at="stem", activation_noise=0.5)
    # the worker uses as many torch threads as this process: a parallel reduction's order (so the last bits of a
    # trained decoder) depends on the thread count, and the test compares the two runs' numbers
    inv = InversionAttack(every_n_epochs=1, fail_on_error=True, asynchronous=asynchronous, config=CONFIG,
                          worker_threads=torch.get_num_threads())
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
                        callbacks=[inv, PrivacyUtilityCurve(), *callbacks])
    trainer.fit(model, dm)
    model.fit_data = dm
    return model, inv


def test_asynchronous_attacks_land_at_their_snapshot_steps_with_the_synchronous_results(tmp_path):
    sync_model, _ = _fit(tmp_path / "sync", False)
    async_model, _ = _fit(tmp_path / "async", True)
    sync, late = load_curve(tmp_path / "sync"), load_curve(tmp_path / "async")
    assert [p.step for p in late] == [p.step for p in sync] and len(late) == 2  # every epoch, in training order
    for a, b in zip(sync, late):
        assert a.epoch == b.epoch and a.utility == pytest.approx(b.utility)
        ra, rb = a.results["inversion"], b.results["inversion"]
        for key in ("whitebox_tv0_psnr_db", "decoder_psnr_db", "reid_top1", "linkage_top1"):
            assert rb.signals[key].value == pytest.approx(ra.signals[key].value, abs=1e-3), key
    # the view sent to the worker was copied when submitted: the training images' storage was never moved into shared
    # memory behind the DataLoader's back (torch's multiprocessing pickler does that, in place, in a feeder thread)
    assert not async_model.fit_data.members().images.is_shared() and not async_model.fit_data.nonmembers().images.is_shared()
    # the attacks ran in another process: training drew the same random numbers and ended with the same weights
    for (name, p), q in zip(sync_model.named_parameters(), async_model.parameters()):
        assert torch.equal(p, q), name


def test_a_checkpoint_keeps_a_pending_attack_and_a_resumed_run_attacks_that_snapshot(tmp_path):
    grabbed = {}

    class Grab(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):  # right after the attack callback submitted its snapshot
            grabbed["state"] = trainer.callbacks[0].state_dict()
            grabbed["step"] = trainer.global_step

    _fit(tmp_path / "first", True, callbacks=[Grab()], epochs=1)
    (pending,) = grabbed["state"]["pending"]  # the worker process was still starting: the attack had not returned
    assert pending["step"] == grabbed["step"] and any("stem" in k for k in pending["module_state"])  # the snapshot's weights
    again = InversionAttack(every_n_epochs=5, fail_on_error=True, asynchronous=True, config=CONFIG)
    again.load_state_dict(grabbed["state"])
    dm = SyntheticIdentityDataModule(n_identities=4, per_identity=16, aux_images=64, image_size=16)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path / "resumed",
                        callbacks=[again, PrivacyUtilityCurve()])
    trainer.fit(SplitClassifier(width=8, split_at="stem", activation_noise=0.5), dm)
    steps = [p.step for p in load_curve(tmp_path / "resumed")]
    assert pending["step"] in steps  # the snapshot taken before the "interruption" was attacked after the resume
