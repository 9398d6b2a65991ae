"""Attack callbacks under DDP (2 processes, spawn, gloo): no deadlock, one curve written by rank 0, the planted leak
seen, and the Result equal to the same attack on the same weights in one process."""

from __future__ import annotations

import pytest
import torch

from privgan.attacks.registry import get_attack
from privgan.callbacks import MembershipAttack, PrivacyUtilityCurve
from privgan.data.synthetic import SyntheticIdentityDataModule
from privgan.modules import SplitClassifier
from privgan.reporting.points import load_curve
from privgan.targets import view_from
from tests.ddp.helpers import ddp_trainer, read_reports

pytestmark = [pytest.mark.ddp, pytest.mark.timeout(300)]


def callbacks():
    # random labels: only memorisation fits them, so membership leaks (a planted truth the attack must see)
    return [MembershipAttack(every_n_epochs=8, config={"shadow_models": 0, "n_boot": 200}), PrivacyUtilityCurve(plot=False)]


def data():
    return SyntheticIdentityDataModule(n_identities=4, per_identity=32, image_size=16, batch_size=16, random_labels=True)


def test_an_attack_under_ddp_sees_the_planted_leak_once_and_equals_the_attack_on_the_same_weights_in_one_process(tmp_path):
    # Two ranks train a different model than one process would (twice the global batch), so the exact
    # check is on the same weights: rank 0's attack under DDP must equal the attack re-run here, unsharded.
    two = ddp_trainer(tmp_path, "attack", max_epochs=8, callbacks=callbacks())
    two.fit(SplitClassifier(width=8, lr=5e-3, augment=False), data())
    points = load_curve(tmp_path)
    assert len(points) == 1  # one point, written once (by rank 0), at the last epoch
    under_ddp = points[-1].results["membership"]
    assert under_ddp.signals["loss_auc"].value > 0.6 and under_ddp.verdict == "leak"  # the planted leak is seen

    rank0 = read_reports(tmp_path, "attack")[0]
    module = SplitClassifier(width=8, lr=5e-3, augment=False, num_classes=4)
    torch.nn.utils.vector_to_parameters(rank0["end"], module.parameters())
    for buf, saved in zip(module.buffers(), rank0["buffers"]):
        buf.copy_(saved)
    cb = callbacks()[0]
    dm = data()
    dm.setup("fit")
    again = cb.attack_module(module, view_from(dm, needs=get_attack("membership").needs), 7, {})  # epoch 7: the last of 8
    for k, s in under_ddp.signals.items():
        assert again.signals[k].value == pytest.approx(s.value, abs=1e-6), k  # the whole data set, not one rank's shard
