"""Planted truths: the family of edits a copied training photo may go through, and LFW made to look unlike LFW."""

import pytest
import torch

from privgan.data.planted import (
    COPY_EDITS, DOMAIN_SHIFTS, EDIT_FAMILY, EDITS, apply_edit, edited_copies, planted_copies, register_edit, unlike_lfw,
)


def faces(n: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random 'faces' in [0, 1] (a bright blob on a gradient): enough structure for crops and blurs to show."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    blob = torch.exp(-((xx - 0.2) ** 2 + yy**2) / 0.2)
    base = 0.2 + 0.5 * blob + 0.2 * (xx + 1) / 2
    tint = 0.6 + 0.4 * torch.rand(n, 3, 1, 1, generator=g)
    return (base * tint + 0.05 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


def test_the_edit_family_is_the_documented_one():
    assert set(EDIT_FAMILY) == {"crop", "jpeg", "flip", "brightness", "contrast", "rotation", "grayscale", "resize"}
    assert EDIT_FAMILY == tuple(EDITS) and all(EDITS[e].description for e in EDIT_FAMILY)


@pytest.mark.parametrize("edit", EDIT_FAMILY)
def test_each_edit_changes_the_image_keeps_its_shape_and_range_and_is_seeded(edit):
    x = faces()
    y = apply_edit(x, edit, generator=torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == torch.float32 and 0 <= y.min() and y.max() <= 1
    assert (y - x).abs().mean() > 1e-3, edit
    again = apply_edit(x, edit, generator=torch.Generator().manual_seed(1))
    assert torch.equal(y, again)
    assert apply_edit(x[:0], edit).shape == (0, 3, 32, 32)


def test_edit_parameters_stay_in_their_documented_ranges():
    x = faces(n=40)
    assert torch.equal(apply_edit(x, "flip"), x.flip(-1))
    gray = apply_edit(x, "grayscale")
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    ratio = apply_edit(x * 0.5, "brightness").sum((1, 2, 3)) / (x * 0.5).sum((1, 2, 3))  # no clamping at 0.5
    assert ratio.min() >= 0.85 - 1e-4 and ratio.max() <= 1.15 + 1e-4 and ratio.std() > 0.02
    spread = apply_edit(x, "contrast").std((1, 2, 3)) / x.std((1, 2, 3))
    assert spread.min() >= 0.85 - 1e-3 and spread.max() <= 1.15 + 1e-3
    # resize and jpeg lose detail: the high-frequency noise shrinks
    hf = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()
    assert hf(apply_edit(x, "resize")) < 0.8 * hf(x) and hf(apply_edit(x, "jpeg")) != hf(x)
    # random-offset crops: several different framings of one image, each a zoom of 80-95 %
    one = x[:1].repeat(12, 1, 1, 1)
    crops = apply_edit(one, "crop", generator=torch.Generator().manual_seed(3))
    assert len({round(float(c.sum()), 3) for c in crops}) > 6
    rot = apply_edit(one, "rotation", generator=torch.Generator().manual_seed(3))
    assert ((rot - one).abs().mean((1, 2, 3)) > 1e-3).all()


def test_planted_copies_spread_over_the_edits_and_name_their_source():
    x = faces(n=5)
    copies, src, names = planted_copies(x, 20, generator=torch.Generator().manual_seed(0))
    assert copies.shape == (20, 3, 32, 32) and src.shape == (20,) and len(names) == 20
    assert names[: len(EDIT_FAMILY)] == list(EDIT_FAMILY) and {names.count(e) for e in EDIT_FAMILY} <= {2, 3}
    flips = [i for i, n in enumerate(names) if n == "flip"]
    assert torch.equal(copies[flips], x[src[flips]].flip(-1))
    only, _, n2 = planted_copies(x, 4, edits=["grayscale"])
    assert set(n2) == {"grayscale"} and torch.allclose(only[:, 0], only[:, 2])
    with pytest.raises(ValueError, match="unknown edit 'sepia'"):
        planted_copies(x, 4, edits=["sepia"])
    with pytest.raises(ValueError, match="unknown edit"):
        apply_edit(x, "sepia")


def test_registering_an_edit_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_edit("flip", "again")(lambda x, g: x)


def test_edited_copies_keeps_working_for_its_callers():
    x = faces()
    y = edited_copies(x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and COPY_EDITS == ("jpeg_q70", "crop_90pct", "flip", "brightness_pm10pct")
    assert torch.equal(y, edited_copies(x, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="crop"):
        edited_copies(x, crop=0)


def test_unlike_lfw_makes_each_shift():
    x = faces(n=8, size=40)
    assert DOMAIN_SHIFTS == ("tight_crop", "grayscale", "harsh_light")
    gray = unlike_lfw(x, "grayscale")
    assert torch.allclose(gray[:, 0], gray[:, 2]) and not torch.allclose(x[:, 0], x[:, 2])
    tight = unlike_lfw(x, "tight_crop")
    # the central 70 % fills the frame: the centre pixel stays, the frame's edge now shows what was at 15 % in
    assert torch.allclose(tight[..., 20, 20], x[..., 20, 20], atol=0.05)
    harsh = unlike_lfw(x * 0 + 0.5, "harsh_light", generator=torch.Generator().manual_seed(0))
    cols = harsh.mean((1, 2))  # N x W: a one-sided ramp per image
    dark, bright = cols[:, [0, -1]].min(1).values, cols[:, [0, -1]].max(1).values
    assert (dark < 0.2).all() and (bright > 0.45).all() and (bright / dark > 3).all()  # ~0.35 to ~1.6 gain, gamma > 1
    assert ((cols[:, 1:] - cols[:, :-1]).sign() * (cols[:, -1:] - cols[:, :1]).sign() >= 0).all()  # monotone
    lit_left = cols[:, 0] > cols[:, -1]
    assert 0 < int(lit_left.sum()) < len(x)  # lit from either side
    both = unlike_lfw(x, ("tight_crop", "grayscale", "harsh_light"), generator=torch.Generator().manual_seed(0))
    assert both.shape == x.shape and 0 <= both.min() and both.max() <= 1 and torch.allclose(both[:, 0], both[:, 1])
    assert torch.equal(both, unlike_lfw(x, ("tight_crop", "grayscale", "harsh_light"), generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="unknown domain shift 'sepia'"):
        unlike_lfw(x, "sepia")
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        unlike_lfw(x[0], "grayscale")


@pytest.mark.lfw
def test_unlike_lfw_faces_are_still_the_same_people_to_sface_but_a_different_domain(lfw_dir):
    """On real LFW faces: the shift keeps identity (same-person similarity stays well above other people's) yet moves
    every embedding the same way (the mean embedding of shifted faces is far from the original mean)."""
    from privgan.faces import build_embedder, load_aligned
    from tests.lfw_helpers import one_thread

    names = ["Colin_Powell", "Tony_Blair", "Serena_Williams"]
    files = [f for n in names for f in sorted((lfw_dir / n).iterdir())[:4]]
    with one_thread():
        got = load_aligned(files, size=64, align="mtcnn")
        y = torch.tensor([names.index(p.parent.name) for p in got.paths])
        emb = build_embedder("sface")
        e0 = emb.embed(got.images)
        e1 = emb.embed(unlike_lfw(got.images, DOMAIN_SHIFTS, generator=torch.Generator().manual_seed(0)))
    same = (e1 @ e0.T)[y[:, None] == y[None, :]].mean()
    other = (e1 @ e0.T)[y[:, None] != y[None, :]].mean()
    assert same > other + 0.2, (float(same), float(other))
    assert float((e1.mean(0) - e0.mean(0)).norm()) > 0.2
