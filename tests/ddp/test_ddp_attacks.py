"""Attack callbacks under DDP (2 processes, spawn, gloo): no deadlock, one curve written by rank 0, and the Result agrees
with the same fit on one process within its CI."""

from __future__ import annotations

import lightning as L
import pytest

from privgan.callbacks import MembershipAttack, PrivacyUtilityCurve
from privgan.data.synthetic import SyntheticIdentityDataModule
from privgan.modules import SplitClassifier
from privgan.reporting.points import load_curve
from tests.ddp.helpers import ddp_trainer

pytestmark = [pytest.mark.ddp, pytest.mark.timeout(300)]


def callbacks():
    # random labels: only memorisation fits them, so membership leaks (a planted truth the attack must see)
    return [MembershipAttack(every_n_epochs=6, config={"shadow_models": 0, "n_boot": 200}), PrivacyUtilityCurve(plot=False)]


def data():
    return SyntheticIdentityDataModule(n_identities=4, per_identity=32, image_size=16, batch_size=16, random_labels=True)


def test_an_attack_under_ddp_matches_one_process_within_its_ci(tmp_path):
    one = L.Trainer(accelerator="cpu", devices=1, max_epochs=6, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path / "one",
                    callbacks=callbacks())
    one.fit(SplitClassifier(width=8, lr=5e-3, augment=False), data())
    two = ddp_trainer(tmp_path / "two", "attack", max_epochs=6, callbacks=callbacks())
    (tmp_path / "two").mkdir(exist_ok=True)
    two.fit(SplitClassifier(width=8, lr=5e-3, augment=False), data())
    p1, p2 = load_curve(tmp_path / "one")[-1], load_curve(tmp_path / "two")[-1]
    assert len(load_curve(tmp_path / "two")) == 1  # one point, written once (by rank 0), at the last epoch
    s1, s2 = p1.signal("membership/loss_auc"), p2.signal("membership/loss_auc")
    assert s1.value > 0.6 and p1.results["membership"].verdict == "leak"  # the planted leak is seen on one process
    lo, hi = s1.ci
    assert lo <= s2.value <= hi or s2.ci[0] <= s1.value <= s2.ci[1], (s1, s2)  # and agreed with under DDP
    assert p2.results["membership"].verdict == p1.results["membership"].verdict
