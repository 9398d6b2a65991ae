"""Identity match: a generator that replays members is caught; one that shows other people is not."""

import math

import pytest
import torch
import torch.nn.functional as F

from privgan.attacks.identity_match import (
    share_matching_other_people,
    IdentityMatchScores,
    calibrate_threshold,
    identity_match,
    identity_match_all,
    top_matches,
)
from tests.lfw_helpers import one_thread, planted_lfw, session_cache_dir


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def synthetic_population(seed: int = 0, dim: int = 32, n_mem: int = 10, n_non: int = 10, refs: int = 3):
    """Identity centres as random unit vectors; references are noisy copies of their centre."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_mem + n_non, dim, generator=g), dim=1)

    def around(c: torch.Tensor, k: int) -> torch.Tensor:
        return F.normalize(c.repeat(k, 1) + 0.5 / dim**0.5 * torch.randn(k * len(c), dim, generator=g), dim=1)

    m_lab = torch.arange(n_mem).repeat(refs)
    n_lab = torch.arange(n_non).repeat(refs)
    return centres, around(centres[:n_mem], refs), m_lab, around(centres[n_mem:], refs), n_lab, g, around


# -- pure functions on planted embeddings -----------------------------------------------------------
def test_planted_embeddings_give_perfect_separation():
    centres, m_emb, m_lab, n_emb, n_lab, g, around = synthetic_population()
    samples = around(centres[:10], 4)  # four samples near every member identity
    res = identity_match_all(samples, m_emb, m_lab, n_emb, n_lab, k=3)
    assert set(res) == {"max", "topk_mean", "count_above"}
    for r in res.values():
        # count_above is coarse: with alpha=1 some non-member identities catch a few samples too
        assert r.metrics(n_boot=50)["auc"] >= (0.9 if r.score == "count_above" else 1.0), r.score
        assert r.labels.tolist() == [1] * 10 + [0] * 10
        assert r.names[0] == "member_0" and r.names[-1] == "nonmember_9"
    m = res["topk_mean"].metrics(n_boot=50)
    for key in ("auc_ci_low", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01", "tpr_at_fpr_0.1", "tpr_at_fpr_0.1_ci_high",
                "n_members", "n_nonmembers", "n_identities", "n_samples", "members_p_median"):
        assert key in m, key
    assert m["n_identities"] == 20 and m["n_samples"] == 40
    assert m["members_p_median"] == pytest.approx(1 / 11)


def test_p_values_by_hand():
    r = IdentityMatchScores(torch.tensor([5.0, 3.0, 1.0, 4.0, 2.0, 2.0, 0.0]), torch.tensor([1, 1, 1, 0, 0, 0, 0]),
                            tuple("abcdefg"), "max", 10)
    p = r.p_values()
    assert p[:3].tolist() == pytest.approx([1 / 5, 2 / 5, 4 / 5])
    assert torch.isnan(p[3:]).all()
    rows = r.rows()
    assert rows[1] == {"identity": "b", "member": 1, "max": 3.0, "p_value_max": pytest.approx(0.4)}


def test_threshold_is_calibrated_on_nonmembers():
    g = torch.Generator().manual_seed(1)
    sim = torch.rand(500, 40, generator=g)
    for alpha in (0.5, 1.0, 5.0):
        thr = calibrate_threshold(sim, alpha=alpha)
        assert (sim > thr).sum(0).float().mean().item() == pytest.approx(alpha, abs=0.05)
    with pytest.raises(ValueError, match="alpha"):
        calibrate_threshold(sim, alpha=0)


def test_count_above_uses_a_given_threshold_and_other_errors():
    centres, m_emb, m_lab, n_emb, n_lab, g, around = synthetic_population(seed=2)
    samples = around(centres[:3], 2)
    r = identity_match(samples, m_emb, m_lab, n_emb, n_lab, score="count_above", threshold=0.99)
    assert r.threshold == 0.99 and r.scores.sum() == 0
    with pytest.raises(ValueError, match="unknown identity scores"):
        identity_match(samples, m_emb, m_lab, n_emb, n_lab, score="median")
    with pytest.raises(ValueError, match="k must be"):
        identity_match(samples, m_emb, m_lab, n_emb, n_lab, k=0)
    with pytest.raises(ValueError, match="reduce"):
        identity_match(samples, m_emb, m_lab, n_emb, n_lab, reduce="min")


def test_top_matches_points_at_the_right_identity_and_photos():
    centres, m_emb, m_lab, n_emb, n_lab, g, around = synthetic_population(seed=3)
    samples = torch.cat([around(centres[[4]], 1), F.normalize(torch.randn(6, 32, generator=g), dim=1)])
    best = top_matches(samples, m_emb, m_lab, names=[f"id{i}" for i in range(10)], n=3)
    assert best[0].sample_index == 0 and best[0].identity == 4 and best[0].name == "id4"
    assert len(best[0].reference_indices) == 3 and all(int(m_lab[i]) == 4 for i in best[0].reference_indices)
    assert list(best[0].reference_similarities) == sorted(best[0].reference_similarities, reverse=True)
    assert [b.similarity for b in best] == sorted((b.similarity for b in best), reverse=True)
    assert len({b.identity for b in best}) == len(best)
    # one identity matched by every sample: the gallery is filled with its next best samples
    one = top_matches(around(centres[[2]], 5), m_emb, m_lab, n=3)
    assert len(one) == 3 and {b.identity for b in one} == {2} and len({b.sample_index for b in one}) == 3


# -- planted truths on real LFW faces with SFace -----------------------------------------------------
@pytest.fixture(scope="module")
def lfw(lfw_dir, tmp_path_factory):
    return planted_lfw(lfw_dir, session_cache_dir(tmp_path_factory))


def _scores(lfw, emb):
    return identity_match_all(emb, lfw["member_ref_emb"], lfw["member_ref_labels"], lfw["nonmember_emb"], lfw["nonmember_labels"],
                              k=5, member_names=lfw["members"], nonmember_names=lfw["nonmembers"])


@pytest.mark.lfw
def test_generator_replaying_member_photos_is_caught(lfw):
    """Flipped / brightened / cropped training photos match the members' *other* photos."""
    res = _scores(lfw, lfw["replay_emb"])
    n_non = len(lfw["nonmembers"])
    for name, r in res.items():
        m = r.metrics(n_boot=200)
        assert m["auc"] >= 0.95, (name, m["auc"])
    p = res["topk_mean"].p_values()[:8]
    assert p.min() == pytest.approx(1 / (1 + n_non))  # ranked above every non-member
    assert (p <= 2 / (1 + n_non)).float().mean() >= 0.75
    assert res["max"].names[:8] == tuple(lfw["members"])


@pytest.mark.lfw
def test_generator_showing_other_people_is_near_chance(lfw):
    """Faces of identities outside both populations: members and non-members are exchangeable.

    With 8 vs 12 identities the null AUC has a standard deviation of about 0.13, so the honest
    check is the bootstrap CI containing 0.5 and the AUC within 0.5 +- 0.3.
    """
    res = _scores(lfw, lfw["others_emb"])
    for name, r in res.items():
        m = r.metrics(n_boot=300)
        assert abs(m["auc"] - 0.5) <= 0.3, (name, m["auc"])
        assert m["auc_ci_low"] <= 0.5 <= m["auc_ci_high"], (name, m)


@pytest.mark.lfw
def test_gallery_matches_of_replayed_members_are_members(lfw):
    best = top_matches(lfw["replay_emb"], lfw["member_ref_emb"], lfw["member_ref_labels"], names=lfw["members"], n=4)
    for b in best:
        # the sample is an edit of a training photo of the identity it matched
        assert int(lfw["train_labels"][b.sample_index % len(lfw["train"])]) == b.identity
        assert all(int(lfw["member_ref_labels"][i]) == b.identity for i in b.reference_indices)
        assert math.isfinite(b.similarity) and b.similarity > 0.3


# -- the registered attack on the same planted truths ---------------------------------------------------
def _replayer(images: torch.Tensor):
    """A GanTarget whose "generator" replays ``images`` in a seeded order (n must not exceed their number)."""
    from privgan.targets.kinds import GanTarget

    return GanTarget(sample=lambda n, g: images[torch.randperm(len(images), generator=g)[:n]])


@pytest.fixture(scope="module")
def planted_view(lfw):
    """One view for both tests: it embeds its photos once per embedder."""
    from privgan.targets.view import AttackerView, Photos

    held = Photos(lfw["member_refs"], lfw["member_ref_labels"], tuple(lfw["members"]))
    non = Photos(lfw["nonmember_refs"], lfw["nonmember_labels"], tuple(lfw["nonmembers"]))
    return AttackerView(members=Photos(lfw["train"], lfw["train_labels"], tuple(lfw["members"])), heldout=held,
                        nonmembers=non, nonmember_references=non)


@pytest.mark.lfw
def test_registered_attack_catches_a_replaying_generator(lfw, planted_view):
    from privgan.attacks import run_attack

    r = run_attack("identity_match", _replayer(lfw["replay"]), planted_view,
                   {"n_samples": len(lfw["replay"]), "k": 5, "n_boot": 200, "n_gallery": 4, "fd": False})
    n_non = len(lfw["nonmembers"])
    for score in ("max", "topk_mean", "count_above"):
        assert r.signals[f"{score}_auc"].value >= 0.95, (score, r.signals[f"{score}_auc"])
    assert r.signals["auc"] == r.signals["topk_mean_auc"] and r.best == "topk_mean"
    assert r.verdict == "leak" and "auc" in r.leaking
    assert r.values["n_members"] == 8 and r.values["n_identities"] == 20
    assert r.values["members_p_min"] == pytest.approx(1 / (1 + n_non)) == r.values["smallest_possible_p"]
    assert r.values["samples_matching_members"] > r.values["samples_matching_nonmembers"]
    assert math.isfinite(r.values["verify_threshold"]) and "fd_face" not in r.values  # FD-face: see the callback tests
    assert [row["identity"] for row in r.rows[:8]] == lfw["members"] and {row["group"] for row in r.rows[8:]} == {"nonmember"}
    assert all(row["n_train"] == 3 for row in r.rows[:8])
    # the gallery puts each best sample next to photos of the member it replays
    assert all("(member)" in c for c in r.images["gallery"].captions)


@pytest.mark.lfw
def test_registered_attack_on_a_generator_of_other_people_finds_no_leak(lfw, planted_view):
    from privgan.attacks import run_attack
    from tests.lfw_helpers import light_edits

    others = light_edits(lfw["others"])
    r = run_attack("identity_match", _replayer(others), planted_view,
                   {"n_samples": len(others), "k": 5, "n_boot": 300, "fd": False, "n_gallery": 0})
    for score in ("max", "topk_mean", "count_above"):
        s = r.signals[f"{score}_auc"]
        assert abs(s.value - 0.5) <= 0.3 and s.ci[0] <= 0.5 <= s.ci[1], (score, s)
    # 12 non-member identities cannot show a TPR at 10% FPR (fewer than 5 false positives): AUC decides alone
    assert r.signals["tpr_at_fpr_0.1"].chance is None
    assert r.verdict == "no leak found", r.leaking


def test_verify_share_reference_counts_only_other_people():
    """A real photo's own person never counts: two tight clusters verify only against themselves, so the share is 0."""
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(2, 16, generator=g), dim=1)
    emb = F.normalize(centres.repeat_interleave(5, 0) + 0.01 * torch.randn(10, 16, generator=g), dim=1)
    labels = torch.arange(2).repeat_interleave(5)
    cross = float((centres[0] @ centres[1]).abs())
    assert share_matching_other_people(emb, labels, threshold=cross + 0.2) == 0.0
    assert share_matching_other_people(emb, labels, threshold=-1.0) == 1.0
    assert share_matching_other_people(emb[:5], torch.arange(5), threshold=0.9) == 1.0  # one person split in five
