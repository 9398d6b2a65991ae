"""Result and Signal: one verdict rule for every attack, a faithful round trip, flat logger keys, one best-of rule."""

import dataclasses
import json
import math

import pytest

from privgan.attacks.result import Result, Signal, best_of, merge_sub_attacks


def _result(signals, *, converged=True, values=None, headline=None, **kw):
    return Result(attack="toy", signals=signals, headline=headline or next(iter(signals)), converged=converged,
                  values=values or {}, **kw)


# -- the verdict rule ----------------------------------------------------------------------------------
def test_a_signal_whose_interval_lies_above_its_own_chance_is_a_leak():
    auc = Signal(0.8, 0.5, (0.7, 0.9))
    r = _result({"auc": auc, "tpr": Signal(0.02, 0.01, (0.0, 0.05))})
    assert auc.decides and auc.above_chance
    assert r.verdict == "leak" and r.leaking == ["auc"]
    # each signal against its *own* chance: 0.3 is far below an AUC's 0.5 but above a 1/10 top-1 chance
    top1 = _result({"reid_top1": Signal(0.3, 0.1, (0.2, 0.4)), "auc": Signal(0.45, 0.5, (0.35, 0.55))})
    assert top1.verdict == "leak" and top1.leaking == ["reid_top1"]


def test_a_lower_is_leak_signal_below_its_chance_is_a_leak_and_above_it_is_not():
    dist = Signal(0.2, 0.5, (0.1, 0.3), higher_is_leak=False)  # e.g. a distance: smaller than chance means a leak
    assert dist.above_chance
    assert _result({"dist": dist}).verdict == "leak"
    far = Signal(0.8, 0.5, (0.7, 0.9), higher_is_leak=False)  # the "wrong" side for this direction
    assert not far.above_chance
    assert _result({"dist": far}).verdict == "no leak found"


def test_an_interval_touching_chance_is_not_a_leak():
    assert _result({"auc": Signal(0.6, 0.5, (0.5, 0.7))}).verdict == "no leak found"
    assert _result({"d": Signal(0.4, 0.5, (0.3, 0.5), higher_is_leak=False)}).verdict == "no leak found"


def test_no_leak_found_needs_convergence_and_a_signal_that_can_decide():
    straddle = Signal(0.52, 0.5, (0.45, 0.6))
    assert _result({"auc": straddle}).verdict == "no leak found"
    # the same numbers from an attack that did not converge prove nothing
    assert _result({"auc": straddle}, converged=False).verdict == "inconclusive"
    # big-looking numbers without a chance level or interval never decide, either way
    psnr = Signal(38.0)
    no_ci = Signal(0.99, 0.5, None)
    nan_ci = Signal(0.99, 0.5, (math.nan, 1.0))
    for s in (psnr, no_ci, nan_ci):
        assert not s.decides and not s.above_chance
    r = _result({"psnr_db": psnr, "reid": no_ci, "auc": nan_ci}, values={"reid_rate": 0.99, "n_targets": 1000.0})
    assert r.verdict == "inconclusive" and r.leaking == []
    # a leak is a leak even when the attack did not converge: silence needs convergence, evidence does not
    assert _result({"auc": Signal(0.9, 0.5, (0.8, 1.0))}, converged=False).verdict == "leak"


def test_headline_must_be_a_signal_and_lookup_by_name():
    with pytest.raises(ValueError, match="headline 'auc'.*psnr_db"):
        Result(attack="toy", signals={"psnr_db": Signal(30.0)}, headline="auc")
    r = _result({"auc": Signal(0.7, 0.5, (0.6, 0.8))}, values={"n_members": 12.0})
    assert r["auc"] == 0.7 and r["n_members"] == 12.0
    with pytest.raises(KeyError):
        r["missing"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.converged = False  # type: ignore[misc]


# -- plain form -------------------------------------------------------------------------------------------
def test_to_dict_from_dict_round_trip_and_the_verdict_is_recomputed():
    r = Result(attack="toy", headline="auc", best="loss", converged=True, knowledge="black-box", seconds=1.5, notes=("a note",),
               signals={"auc": Signal(0.81, 0.5, (0.7, 0.9)), "psnr_db": Signal(21.0),
                        "dist": Signal(0.2, 0.5, (0.1, 0.3), higher_is_leak=False)},
               values={"n_members": 10.0, "fd_face": 0.25}, rows=({"identity": "a", "member": 1, "score": 0.5},))
    d = json.loads(json.dumps(r.to_dict(with_rows=True)))  # through JSON, as curve.json and epoch_NNN.json store it
    assert d["verdict"] == "leak" and d["leaking"] == ["auc", "dist"]
    back = Result.from_dict(d)
    assert back == r and back.signals["dist"].higher_is_leak is False and back.signals["psnr_db"].chance is None
    assert "rows" not in r.to_dict() and Result.from_dict(r.to_dict()).rows == ()
    # a stored verdict is never trusted: it follows from the signals
    d["verdict"], d["leaking"] = "no leak found", []
    assert Result.from_dict(d).verdict == "leak"
    d["signals"]["auc"]["ci"], d["signals"]["dist"]["ci"] = [0.4, 0.9], [0.1, 0.6]
    assert Result.from_dict(d).verdict == "no leak found"
    d["converged"] = False
    assert Result.from_dict(d).verdict == "inconclusive"


def test_metrics_are_flat_keys_under_the_given_name():
    r = _result({"auc": Signal(0.8, 0.5, (0.7, 0.9)), "psnr_db": Signal(20.0)}, values={"n_members": 6.0}, seconds=2.0)
    m = r.metrics(name="identity_match_b")
    assert m == {
        "privacy/identity_match_b_auc": 0.8, "privacy/identity_match_b_auc_ci_low": 0.7,
        "privacy/identity_match_b_auc_ci_high": 0.9, "privacy/identity_match_b_auc_chance": 0.5,
        "privacy/identity_match_b_psnr_db": 20.0, "privacy/identity_match_b_n_members": 6.0,
        "privacy/identity_match_b_leak": 1.0, "privacy/identity_match_b_converged": 1.0,
        "privacy/identity_match_b_seconds": 2.0,
    }
    assert set(r.metrics()) == {k.replace("identity_match_b", "toy") for k in m}  # the attack's name by default
    assert all(k.startswith("eval/toy_") for k in r.metrics("eval/"))
    assert _result({"auc": Signal(0.5, 0.5, (0.4, 0.6))}).metrics()["privacy/toy_leak"] == 0.0


# -- one best-of rule ----------------------------------------------------------------------------------------
def test_best_of_picks_the_strongest_in_each_signals_leaking_direction():
    up = {"a": {"auc": Signal(0.6, 0.5)}, "b": {"auc": Signal(0.9, 0.5)}, "c": {"auc": Signal(math.nan, 0.5)}}
    assert best_of(up, "auc") == "b"
    down = {"a": {"d": Signal(0.6, 1.0, higher_is_leak=False)}, "b": {"d": Signal(0.2, 1.0, higher_is_leak=False)}}
    assert best_of(down, "d") == "b"  # the smallest distance
    with pytest.raises(ValueError, match="no sub-attack"):
        best_of({}, "auc")


def test_best_of_never_picks_a_nan_sub_attack_for_a_lower_is_leak_signal():
    down = {"a": {"d": Signal(0.6, 1.0, higher_is_leak=False)}, "b": {"d": Signal(0.2, 1.0, higher_is_leak=False)},
            "c": {"d": Signal(math.nan, 1.0, higher_is_leak=False)}}
    assert best_of(down, "d") == "b"


def test_merge_sub_attacks_keeps_every_sub_attack_and_the_best_under_plain_names():
    subs = {
        "loss": {"auc": Signal(0.7, 0.5, (0.6, 0.8)), "tpr_at_fpr_0.01": Signal(0.05, 0.01, (0.02, 0.1))},
        "lira_offline": {"auc": Signal(0.9, 0.5, (0.85, 0.95)), "tpr_at_fpr_0.01": Signal(0.3, 0.01, (0.2, 0.4))},
    }
    best, merged = merge_sub_attacks(subs, "auc")
    assert best == "lira_offline"
    assert set(merged) == {"auc", "tpr_at_fpr_0.01", "loss_auc", "loss_tpr_at_fpr_0.01", "lira_offline_auc",
                           "lira_offline_tpr_at_fpr_0.01"}
    assert merged["auc"] is subs["lira_offline"]["auc"] and merged["tpr_at_fpr_0.01"] is subs["lira_offline"]["tpr_at_fpr_0.01"]
    assert merged["loss_auc"] is subs["loss"]["auc"]
    # chosen by the key signal only: a sub-attack better at another signal does not win
    subs["loss"]["tpr_at_fpr_0.01"] = Signal(0.9, 0.01, (0.8, 1.0))
    assert merge_sub_attacks(subs, "auc")[0] == "lira_offline"
    assert merge_sub_attacks(subs, "tpr_at_fpr_0.01")[0] == "loss"
