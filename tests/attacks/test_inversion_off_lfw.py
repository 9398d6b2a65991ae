"""Inversion verdicts on faces unlike LFW: a threshold calibrated on harshly lit faces must not hide a leak."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from privgan.attacks import run_attack
from privgan.data.planted import unlike_lfw
from privgan.targets.kinds import SplitTarget
from privgan.targets.view import AttackerView, Photos
from tests.lfw_helpers import aligned_faces, lfw_identities, one_thread, session_cache_dir

pytestmark = pytest.mark.lfw


@pytest.fixture(scope="module")
def harsh_view(lfw_dir, tmp_path_factory) -> AttackerView:
    """8 people (5 gallery + 3 target photos each) and 24 auxiliary people, all harshly lit, grayscale and tightly cropped."""
    cache = session_cache_dir(tmp_path_factory)
    with one_thread():
        people = lfw_identities(lfw_dir, min_images=8, count=8, seed=5)
        aux_people = lfw_identities(lfw_dir, min_images=3, count=24, seed=6, exclude=set(people))
        x, y = aligned_faces(lfw_dir, people, 8, cache_dir=cache, size=64)
        ax, ay = aligned_faces(lfw_dir, aux_people, 3, cache_dir=cache, size=64)
    shift = ("harsh_light", "grayscale", "tight_crop")
    x, ax = unlike_lfw(x, shift), unlike_lfw(ax, shift)
    gallery = torch.arange(len(x)) % 8 < 5
    return AttackerView(members=Photos(x[gallery], y[gallery], tuple(people)), heldout=Photos(x[~gallery], y[~gallery], tuple(people)),
                        auxiliary=Photos(ax, ay))


def test_a_leak_on_harshly_lit_faces_is_called_a_leak(harsh_view):
    """The client sends a 2x-pooled image: reconstructions are blurred but name the person far above chance.

    The re-id threshold is calibrated on the attacker's harshly lit auxiliary faces (so it sits far
    above LFW's 0.38 at the same pair FAR); top-1 identification is a signal of its own, each
    signal is judged against its own chance, and the verdict is "leak".
    """
    client = SplitTarget(client=lambda im: F.avg_pool2d(im, 2))
    with one_thread():
        r = run_attack("inversion", client, harsh_view, {"n_targets": 24, "whitebox_steps": 150, "tv_weights": (0.05,),
                                                         "decoder": False, "pair_far": 1e-3, "n_gallery": 0})
    top1 = r.signals["reid_top1"]
    assert top1.chance == pytest.approx(1 / 8)
    assert top1.ci[0] > top1.chance, (top1, r.values)
    assert r.verdict == "leak" and "reid_top1" in r.leaking
    assert r.values["reid_threshold"] > 0.45  # calibrated in the attacker's (shifted) domain, not LFW's
