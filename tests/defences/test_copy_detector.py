"""The release gate's copy detector: edited copies of a training photo correlate with it far above other faces do,
and the two thresholds (recogniser, copy detector) together keep the promised block rate."""

import math

import pytest
import torch

from privgan.data.planted import EDIT_FAMILY, apply_edit, unlike_lfw
from privgan.defences.copy_detector import CopyDetector, CopyViews, copy_features
from privgan.defences.release_filter import block_threshold, joint_thresholds
from tests.lfw_helpers import aligned_faces, lfw_identities, one_thread, session_cache_dir


def test_views_cover_every_crop_on_the_grid():
    v = CopyViews(min_crop=0.8, grid=32, rotations=(-5.0, 5.0), mirrored=True)
    boxes = v.boxes()
    assert boxes[0] == (1.0, 0.0, 0.0) and len(boxes) == 1 + sum((33 - c) ** 2 for c in range(26, 32))  # 140
    assert v.count() == 2 * (140 + 2)
    assert all(0.8 <= s < 1 and 0 <= t <= 1 - s + 1e-9 and 0 <= l <= 1 - s + 1e-9 for s, t, l in boxes[1:])
    with pytest.raises(ValueError, match="min_crop"):
        CopyViews(min_crop=0)


def test_features_are_blind_to_brightness_and_contrast():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.2
    f, g = copy_features(x, 16), copy_features(0.1 + 1.3 * x, 16)
    assert torch.allclose(f, g, atol=1e-5) and torch.allclose(f.norm(dim=1), torch.ones(4))


def test_joint_thresholds_keep_the_budget_and_fall_back_to_one_threshold():
    g = torch.Generator().manual_seed(1)
    ident, copy = torch.rand(5000, generator=g), torch.rand(5000, generator=g)
    t, tc = joint_thresholds(ident, copy, 1e-2)
    blocked = (ident > t) | (copy > tc)
    assert int(blocked.sum()) <= math.floor(1e-2 * 5000) - 1  # one false block is given up for the second threshold
    assert int((copy > tc).sum()) == (50 - 1) // 2  # the copy detector's half
    assert int(blocked.sum()) >= 45  # and the rest goes to the recogniser, not wasted
    assert joint_thresholds(ident, None, 1e-2) == (block_threshold(ident, 1e-2), math.inf)
    assert joint_thresholds(torch.empty(0), torch.empty(0), 1e-2) == (-math.inf, -math.inf)


@pytest.mark.lfw
def test_edited_copies_stand_out_from_other_faces_on_lfw_and_unlike_lfw(lfw_dir, tmp_path_factory):
    """Planted truth: every edit of the family applied to a training photo correlates with it above every
    innocent face of other people, on LFW faces and on tight grey harshly lit ones."""
    cache = session_cache_dir(tmp_path_factory)
    people = lfw_identities(lfw_dir, min_images=8, count=8, seed=5)  # the faces tests/attacks/test_inversion_off_lfw aligns
    others = lfw_identities(lfw_dir, min_images=3, count=24, seed=6, exclude=set(people))
    x, y = aligned_faces(lfw_dir, people, 8, cache_dir=cache)
    train, innocent = x[y < 6], torch.cat([x[y >= 6], aligned_faces(lfw_dir, others, 3, cache_dir=cache)[0]])
    y = y[y < 6]  # 48 training photos of 6 people; 88 innocent photos of 26 others
    with one_thread():
        for domain in ("lfw", "transformed"):
            shift = (lambda z: unlike_lfw(z, ("tight_crop", "grayscale", "harsh_light"),
                                          generator=torch.Generator().manual_seed(0))) if domain == "transformed" else (lambda z: z)
            tr, inn = shift(train), shift(innocent)
            det = CopyDetector(tr, y, views=CopyViews(rotations=(-8.0, -4.0, 4.0, 8.0)))
            top_innocent = float(det.per_photo(inn).amax())
            g = torch.Generator().manual_seed(5)
            for e in EDIT_FAMILY:
                src = torch.randint(0, len(tr), (24,), generator=g)
                p = det.per_photo(apply_edit(tr[src], e, generator=g))
                own = p[torch.arange(len(src)), src]  # correlation with the photo each copy was made from
                assert float(own.min()) > top_innocent, (domain, e, float(own.min()), top_innocent)
                assert (p.argmax(1) == src).float().mean() >= 0.9, (domain, e)  # and it names that photo
            scores, per_photo = det.per_identity(inn, 6)
            assert scores.shape == (len(inn), 6) and torch.equal(scores.amax(1), per_photo.amax(1))
            best = det.best_photo(per_photo, scores.argmax(1))
            assert torch.equal(y[best], scores.argmax(1))


def test_rotated_crops_are_views_when_asked_for():
    v = CopyViews(rotations=(-5.0, 5.0), rotated_crop_grid=8, mirrored=False)
    assert v.rotated_boxes() == v.boxes(8) and len(v.boxes(8)) == 1 + sum((9 - c) ** 2 for c in range(7, 8))
    assert v.count() == 140 + 2 * len(v.boxes(8))
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    from privgan.defences.copy_detector import rotate, view_images

    got = list(view_images(x, v))
    assert len(got) == v.count() and torch.allclose(got[140], rotate(x, -5.0))  # first: the whole tilted photo
