"""The attack registry: names, configs, view needs, and a custom attack run through run_attack."""

import dataclasses
from dataclasses import dataclass

import pytest
import torch

from privgan.attacks import available_attacks, get_attack, make_config, register_attack, run_attack
from privgan.attacks.identity_match import IdentityMatchConfig
from privgan.attacks.registry import _ATTACKS
from privgan.attacks.result import Result, Signal
from privgan.targets.view import AttackerView, Photos

FOUR = ["gan_membership", "identity_match", "inversion", "membership"]


def _photos(n, n_ids=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Photos(torch.rand(n, 3, 4, 4, generator=g), torch.arange(n) % n_ids, tuple(f"p{i}" for i in range(n_ids)))


def test_the_four_attacks_are_registered_with_their_kinds_and_needs():
    assert [a for a in available_attacks() if a in FOUR] == FOUR
    kinds = {n: get_attack(n).target for n in FOUR}
    assert kinds == {"gan_membership": "gan", "identity_match": "gan", "inversion": "split", "membership": "classifier"}
    assert set(get_attack("identity_match").needs) == {"heldout", "nonmembers", "nonmember_references"}
    assert set(get_attack("gan_membership").needs) == {"members", "nonmembers"}
    assert set(get_attack("inversion").needs) == {"members", "heldout", "auxiliary"}
    assert set(get_attack("membership").needs) == {"members", "heldout"}
    assert all(get_attack(n).summary for n in FOUR)


def test_an_unknown_attack_names_the_registered_ones():
    with pytest.raises(KeyError) as e:
        get_attack("identity")
    msg = str(e.value)
    assert "unknown attack 'identity'" in msg and all(n in msg for n in FOUR)
    with pytest.raises(KeyError, match="gan_membership"):
        run_attack("logan", None, AttackerView())


def test_make_config_from_none_dict_instance_and_overrides():
    assert make_config("identity_match") == IdentityMatchConfig()
    c = make_config("identity_match", {"n_samples": 12, "score": "max"}, k=2)
    assert (c.n_samples, c.score, c.k) == (12, "max", 2)
    assert make_config("identity_match", c) is c
    assert make_config("identity_match", c, seed=3) == dataclasses.replace(c, seed=3)
    with pytest.raises(TypeError, match="IdentityMatchConfig or a dict"):
        make_config("identity_match", make_config("membership"))
    with pytest.raises(ValueError, match="score"):  # the config's own checks still run
        make_config("identity_match", {"score": "median"})


def test_make_config_rejects_unknown_keys_naming_them_and_the_valid_ones():
    with pytest.raises(TypeError) as e:
        make_config("identity_match", {"verify_far": 1e-3, "n_samples": 10})
    msg = str(e.value)
    assert "verify_far" in msg and "verify_pair_far" in msg and "n_samples" in msg.split("valid:")[1]
    assert "'n_samples'" not in msg.split("valid:")[0]  # a known key is not reported as unknown
    with pytest.raises(TypeError, match=r"\['far'\].*pair_far"):  # the inversion's renamed pair FAR
        make_config("inversion", {"far": 0.05})
    with pytest.raises(TypeError, match="reference_models"):  # renamed to shadow_models
        make_config("membership", None, reference_models=2)


def test_run_attack_refuses_a_view_that_lacks_a_needed_part():
    view = AttackerView(heldout=_photos(6), source="toy-source")
    with pytest.raises(ValueError) as e:
        run_attack("identity_match", None, view)
    msg = str(e.value)
    assert "identity_match" in msg and "nonmember_references" in msg and "toy-source" in msg and "nonmembers/" in msg
    assert "heldout" not in msg.split("lacks")[0].split("needs")[1]  # only what is missing is named
    empty = AttackerView(members=_photos(4), heldout=Photos(torch.zeros(0, 3, 4, 4), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="needs heldout"):  # an empty part counts as missing
        run_attack("membership", None, empty)


@dataclass(frozen=True)
class MeanGapConfig:
    gap: float = 0.0


@pytest.fixture
def custom_attack():
    """A toy attack registered for one test, removed after it."""
    calls = []

    @register_attack("toy_mean_gap", config=MeanGapConfig, target="any", needs=("members", "heldout"))
    def run_mean_gap(target, view, config, *, scale=1.0):
        """Is the members' mean brightness above the held-out photos'? (a test attack)"""
        calls.append((target, config, scale))
        gap = scale * float(view.members.images.mean() - view.heldout.images.mean()) + config.gap
        return Result(attack="toy_mean_gap", signals={"gap": Signal(gap, 0.0, (gap - 0.01, gap + 0.01))}, headline="gap")

    yield calls
    _ATTACKS.pop("toy_mean_gap", None)


def test_a_registered_custom_attack_runs_through_run_attack(custom_attack):
    assert "toy_mean_gap" in available_attacks()
    assert get_attack("toy_mean_gap").summary == "Is the members' mean brightness above the held-out photos'? (a test attack)"
    bright = Photos(torch.full((4, 3, 4, 4), 0.9), torch.arange(4) % 2)
    dark = Photos(torch.full((4, 3, 4, 4), 0.1), torch.arange(4) % 2)
    r = run_attack("toy_mean_gap", "the target", AttackerView(members=bright, heldout=dark), {"gap": 0.1},
                   resources={"scale": 2.0})
    assert r.signals["gap"].value == pytest.approx(2 * 0.8 + 0.1) and r.verdict == "leak"
    assert r.seconds > 0  # run_attack times the run
    target, config, scale = custom_attack[0]
    assert target == "the target" and config == MeanGapConfig(0.1) and scale == 2.0
    assert run_attack("toy_mean_gap", None, AttackerView(members=dark, heldout=bright), gap=0.0).verdict == "no leak found"
    with pytest.raises(ValueError, match="needs heldout"):
        run_attack("toy_mean_gap", None, AttackerView(members=bright))
    with pytest.raises(TypeError, match="unknown config keys.*gap"):
        run_attack("toy_mean_gap", None, AttackerView(members=bright, heldout=dark), {"gapp": 1})


def test_duplicate_registration_is_an_error(custom_attack):
    with pytest.raises(ValueError, match="'toy_mean_gap' is already registered"):
        register_attack("toy_mean_gap", config=MeanGapConfig, target="any", needs=())(lambda t, v, c: None)
    with pytest.raises(ValueError, match="'membership' is already registered"):
        register_attack("membership", config=MeanGapConfig, target="any", needs=())(lambda t, v, c: None)
    assert get_attack("membership").config.__name__ == "MembershipConfig"  # the original survives
