"""Re-identification against a gallery, impostor thresholds at a pair FAR and Wilson intervals."""

import pytest
import torch
import torch.nn.functional as F

from privgan.attacks.reidentification import identify
from privgan.metrics.intervals import wilson_interval
from privgan.metrics.thresholds import impostor_scores, threshold_at_far


def _clusters(k=10, per=5, d=64, spread=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(k, d, generator=g), dim=1)
    labels = torch.arange(k).repeat_interleave(per)
    emb = F.normalize(centres[labels] + spread * torch.randn(len(labels), d, generator=g) / d**0.5 * 4, dim=1)
    return emb, labels, centres


def test_identify_right_people_and_threshold():
    emb, lab, centres = _clusters()
    probes = F.normalize(centres + 0.01 * torch.randn_like(centres), dim=1)
    res = identify(probes, torch.arange(10), emb, lab, threshold=0.5)
    m = res.metrics()
    assert m["reid_top1"] == 1.0 and m["reid_rate"] == 1.0
    assert m["reid_top1_chance"] == pytest.approx(0.1)
    # an impossible threshold keeps top-1 but no verified match
    m2 = identify(probes, torch.arange(10), emb, lab, threshold=1.01).metrics()
    assert m2["reid_top1"] == 1.0 and m2["reid_rate"] == 0.0


def test_random_probes_near_chance():
    emb, lab, _ = _clusters(k=20)
    g = torch.Generator().manual_seed(5)
    probes = F.normalize(torch.randn(400, 64, generator=g), dim=1)
    res = identify(probes, torch.randint(0, 20, (400,), generator=g), emb, lab, threshold=0.0)
    assert abs(res.metrics()["reid_top1"] - 0.05) < 0.04


def test_impostor_threshold_sets_far():
    emb, lab, _ = _clusters(k=60, per=4)
    thr = threshold_at_far(impostor_scores(emb, lab), 0.01)
    sims = emb @ emb.T
    diff = (lab.view(-1, 1) != lab.view(1, -1)) & torch.triu(torch.ones_like(sims, dtype=torch.bool), 1)
    far = (sims[diff] > thr).float().mean().item()
    assert far == pytest.approx(0.01, abs=0.002)
    with pytest.raises(ValueError, match="too few"):
        threshold_at_far(impostor_scores(emb[:8], lab[:8]), 1e-3)


def test_wilson_interval():
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2
    lo, hi = wilson_interval(10, 20)
    assert lo < 0.5 < hi
    assert wilson_interval(0, 0) == (0.0, 1.0)
