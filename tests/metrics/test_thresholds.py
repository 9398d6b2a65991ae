"""Impostor-pair scores, the threshold at a pair FAR, and TAR at a FAR, on hand-checked sets."""

import numpy as np
import pytest
import torch

from privgan.metrics.thresholds import impostor_scores, tar_at_far, threshold_at_far


def test_impostor_scores_are_cosines_of_different_identity_pairs():
    # not unit length on purpose: the scores are cosines
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0], [-3.0, 0.0]])
    s = impostor_scores(emb, torch.tensor([0, 0, 1, 1]))
    # pairs (0, 2), (0, 3), (1, 2), (1, 3); same-identity pairs and the diagonal left out
    assert s.tolist() == pytest.approx([0.0, -1.0, 0.8, -0.6])
    with pytest.raises(ValueError, match="N labels"):
        impostor_scores(emb, torch.tensor([0, 1]))


def test_threshold_is_the_one_minus_far_quantile():
    scores = np.arange(101.0)  # 0, 1, ..., 100
    assert threshold_at_far(scores, 0.01) == pytest.approx(99.0)
    assert threshold_at_far(torch.from_numpy(scores), 0.1) == pytest.approx(90.0)
    # linear interpolation between order statistics: position 0.9 * 9 = 8.1 in 0, 10, ..., 90
    assert threshold_at_far(np.arange(0.0, 100.0, 10.0), 0.1) == pytest.approx(81.0)


def test_threshold_needs_one_over_far_pairs():
    with pytest.raises(ValueError, match=r"^99 impostor pairs are too few to set a threshold at FAR 0.01$"):
        threshold_at_far(np.arange(99.0), 0.01)
    threshold_at_far(np.arange(100.0), 0.01)  # enough
    with pytest.raises(ValueError, match="too few"):
        threshold_at_far(impostor_scores(torch.eye(4), torch.arange(4)), 1e-3)  # 6 pairs
    with pytest.raises(ValueError, match="far must be in"):
        threshold_at_far(np.arange(10.0), 0.0)


def test_threshold_from_embeddings_sets_the_far():
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(120, 16, generator=g), dim=1)
    lab = torch.arange(40).repeat_interleave(3)
    imp = impostor_scores(emb, lab)
    assert len(imp) == 120 * 119 // 2 - 40 * 3
    thr = threshold_at_far(imp, 0.01)
    assert (imp > thr).double().mean().item() == pytest.approx(0.01, abs=1 / len(imp))


def test_tar_at_far_strict_points():
    # no false accept allowed at FAR 1e-3 with 2 impostor pairs: threshold 0.9 accepts one of two genuine
    assert tar_at_far(np.array([0.9, 0.5, 0.6, 0.1]), np.array([1, 1, 0, 0])) == (0.5, 0.9)
    # 1000 impostor pairs: one false accept (FAR exactly 1e-3) is allowed, two are not
    neg = np.r_[0.95, 0.85, np.linspace(0, 0.5, 998)]
    s, y = np.r_[0.99, 0.9, 0.8, neg], np.r_[np.ones(3), np.zeros(1000)]
    assert tar_at_far(s, y, 1e-3) == (pytest.approx(2 / 3), 0.9)
    assert tar_at_far(torch.from_numpy(s), torch.from_numpy(y), 1e-3) == (pytest.approx(2 / 3), 0.9)
    assert tar_at_far(s, y, 2e-3) == (1.0, 0.8)  # the lowest threshold still at 2 false accepts
    # the top score is an impostor's: nothing can be accepted at FAR 0
    assert tar_at_far([0.9, 0.8, 0.1], [0, 1, 0], 0.0) == (0.0, float("inf"))
