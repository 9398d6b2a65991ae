"""One-run privacy audit: the bound's arithmetic, a memorising run with canaries gives a bound above 1, and DP-SGD at
ε = 1 never gives one above its accountant's ε (5 seeds)."""

import math

import lightning as L
import pytest
import torch

from privgan.attacks.audit import AuditConfig, audit_p_value, audit_scores, epsilon_lower_bound, include_half
from privgan.callbacks import PrivacyAudit, PrivacyUtilityCurve
from privgan.data.synthetic import SyntheticIdentityDataModule
from privgan.modules import SplitClassifier
from privgan.reporting.points import load_curve
from tests.lfw_helpers import one_thread


def test_the_bound_follows_the_guesses():
    assert epsilon_lower_bound(100, 50, 25) == 0.0  # coin-flip guessing proves nothing
    all_right = epsilon_lower_bound(100, 100, 100)
    assert 3.0 < all_right < 4.0  # capped by the number of guesses: q^100 = 0.05 at ε ≈ 3.4
    assert epsilon_lower_bound(100, 100, 90) < all_right
    assert epsilon_lower_bound(1000, 1000, 1000) > all_right  # more canaries, higher cap
    assert audit_p_value(100, 50, 40, 1.0, 1e-5) >= audit_p_value(100, 50, 40, 1.0, 0.0)  # δ only loosens
    assert epsilon_lower_bound(100, 50, 40, delta=1e-5) <= epsilon_lower_bound(100, 50, 40)
    with pytest.raises(ValueError, match="correct"):
        audit_p_value(10, 5, 6, 1.0, 0.0)


def test_scores_that_separate_canaries_perfectly_give_the_capped_bound_and_random_ones_nothing():
    inc = include_half(200, 0)
    perfect = audit_scores(inc.float(), inc, accountant_epsilon=1.0)
    assert perfect.signals["epsilon_lower_bound"].value == pytest.approx(perfect.values["bound_cap"])
    assert perfect.verdict == "leak" and "exceeds the accountant" in perfect.notes[0]
    noise = audit_scores(torch.rand(200, generator=torch.Generator().manual_seed(3)), inc, accountant_epsilon=1.0)
    assert noise.signals["epsilon_lower_bound"].value < 0.5 and not noise.notes
    with pytest.raises(ValueError, match="one inclusion flag per canary"):
        audit_scores(torch.rand(5), inc)


def _fit(tmp_path, *, dp, epochs, seed):
    audit = PrivacyAudit(n_canaries=100, seed=seed)
    L.seed_everything(seed)
    tr = L.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path, callbacks=[audit, PrivacyUtilityCurve(plot=False)])
    dm = SyntheticIdentityDataModule(n_identities=4, per_identity=8, aux_images=100, image_size=16, batch_size=32, seed=seed)
    with one_thread():
        tr.fit(SplitClassifier(width=8, lr=3e-3, augment=False, dp=dp), dm)
    return audit.last_result


def test_a_memorising_run_with_canaries_gives_a_bound_above_one(tmp_path):
    r = _fit(tmp_path, dp=None, epochs=40, seed=0)
    assert r.signals["epsilon_lower_bound"].value > 1.0, r.values
    assert r.values["accountant_epsilon"] == math.inf and r.values["n_canaries"] == 100
    assert load_curve(tmp_path)[-1].results["audit"].verdict == "leak"  # on the curve like any attack


def test_dp_sgd_at_epsilon_one_never_exceeds_its_accountant(tmp_path):
    for seed in range(5):
        r = _fit(tmp_path / str(seed), dp={"target_epsilon": 1.0}, epochs=3, seed=seed)
        assert 0 < r.values["accountant_epsilon"] <= 1.0 + 1e-6
        assert r.signals["epsilon_lower_bound"].value <= r.values["accountant_epsilon"], (seed, r.values)


def test_config_and_data_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="n_canaries must be >= 2"):
        PrivacyAudit(n_canaries=1)
    with pytest.raises(ValueError, match="confidence"):
        AuditConfig(confidence=1.5)
    audit = PrivacyAudit(n_canaries=500)
    tr = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path, callbacks=[audit])
    with pytest.raises(ValueError, match="n_canaries=500 but the datamodule has 64 auxiliary faces"):
        tr.fit(SplitClassifier(width=8), SyntheticIdentityDataModule(n_identities=4, per_identity=8, image_size=16))
