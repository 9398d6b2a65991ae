"""MTCNN alignment to the ArcFace template and the per-file aligned-crop cache, on real LFW images."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from privgan.faces.align import ARCFACE_TEMPLATE_112, FaceAligner, arcface_template, similarity_transform
from privgan.faces.cache import EMPTY, MISSING, NO_FACE, UNREADABLE, AlignedFaces, align_files
from privgan.paths import lfw_root

LFW_IMAGES = lfw_root() / "images_deepfunneled"
needs_lfw = pytest.mark.skipif(
    not LFW_IMAGES.is_dir(),
    reason=f"LFW images not found at {LFW_IMAGES} (set PRIVGAN_DATA to the folder holding datasets/)",
)


def lfw_image(name: str, n: int = 1) -> Path:
    return LFW_IMAGES / name / f"{name}_{n:04d}.jpg"


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner()


def test_similarity_transform_recovers_a_planted_similarity() -> None:
    theta, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    src = np.random.default_rng(0).uniform(0, 250, size=(5, 2))
    dst = scale * src @ rot.T + shift
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-7)


def test_similarity_transform_is_least_squares_with_noise_and_rejects_bad_shapes() -> None:
    src = ARCFACE_TEMPLATE_112 * 2 + 30
    m = similarity_transform(src, ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(src @ m[:, :2].T + m[:, 2], ARCFACE_TEMPLATE_112, atol=1e-9)
    with pytest.raises(ValueError, match="matching"):
        similarity_transform(src[:4], ARCFACE_TEMPLATE_112)


def test_template_scales_with_size_and_ctor_is_keyword_only() -> None:
    np.testing.assert_allclose(arcface_template(224), 2 * ARCFACE_TEMPLATE_112)
    with pytest.raises(TypeError):
        FaceAligner(112)  # type: ignore[misc]
    with pytest.raises(ValueError, match="min_prob"):
        FaceAligner(min_prob=1.5)
    assert FaceAligner(size=160).version != FaceAligner(size=112).version


@pytest.mark.lfw
@needs_lfw
@pytest.mark.parametrize("size", [112, 160])
def test_aligned_crop_puts_landmarks_on_the_template(aligner: FaceAligner, size: int) -> None:
    al = aligner if size == 112 else FaceAligner(size=size)
    crop = al.align(Image.open(lfw_image("Colin_Powell", 3)))
    assert crop is not None and crop.shape == (size, size, 3) and crop.dtype == np.uint8
    # detecting again on the aligned crop finds the landmarks where the template puts them
    again = al.landmarks(Image.fromarray(crop).resize((224, 224), Image.BILINEAR))
    assert again is not None
    err = np.abs(again * size / 224 - arcface_template(size)).max()
    assert err < 0.05 * size, err


@pytest.mark.lfw
@needs_lfw
def test_no_face_gives_none_and_the_most_central_face_wins(aligner: FaceAligner) -> None:
    noise = np.random.default_rng(0).integers(0, 256, size=(250, 250, 3), dtype=np.uint8)
    assert aligner.align(Image.fromarray(noise)) is None
    faces = [Image.open(lfw_image(n)).convert("RGB") for n in ("Tony_Blair", "Colin_Powell", "Hugo_Chavez")]
    canvas = Image.new("RGB", (750, 250))
    for i, im in enumerate(faces):
        canvas.paste(im, (250 * i, 0))
    centre, alone = aligner.landmarks(canvas), aligner.landmarks(faces[1])
    assert centre is not None and alone is not None
    assert np.abs(centre - (alone + [250, 0])).max() < 10.0  # the side faces are 250 px away


@pytest.mark.lfw
@needs_lfw
def test_align_files_skips_bad_files_and_caches_everything(tmp_path: Path) -> None:
    real = []
    for name in ("George_W_Bush", "Serena_Williams", "Colin_Powell"):
        real.append(tmp_path / f"{name}.jpg")
        shutil.copy(lfw_image(name), real[-1])
    empty = tmp_path / "empty.jpg"
    empty.touch()
    text = tmp_path / "text.jpg"
    text.write_text("not an image\n")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(lfw_image("Tony_Blair").read_bytes()[:3000])
    noface = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (250, 250, 3), dtype=np.uint8)).save(noface)
    missing = tmp_path / "missing.jpg"
    files = [empty, real[0], text, real[1], truncated, noface, missing, real[2]]
    cache = tmp_path / "cache"

    t0 = time.perf_counter()
    first = align_files(files, cache_dir=cache)
    t_first = time.perf_counter() - t0
    assert isinstance(first, AlignedFaces)
    assert first.images.shape == (3, 3, 112, 112) and first.images.dtype == torch.uint8
    assert first.paths == real
    assert first.skipped[EMPTY] == [str(empty)]
    assert first.skipped[UNREADABLE] == [str(text), str(truncated)]
    assert first.skipped[NO_FACE] == [str(noface)]
    assert first.skipped[MISSING] == [str(missing)]
    assert first.n_cached == 0
    assert "3 aligned of 8 files" in first.summary() and "no face: 1" in first.summary()

    fresh = FaceAligner()
    t0 = time.perf_counter()
    second = align_files(files, aligner=fresh, cache_dir=cache)
    t_second = time.perf_counter() - t0
    assert second.n_cached == 4  # three crops and the "no face" record
    assert fresh._mtcnn is None  # MTCNN never even built
    assert torch.equal(second.images, first.images) and second.paths == first.paths
    assert second.skipped == first.skipped
    assert t_second < t_first / 5

    real[1].write_bytes(lfw_image("Serena_Williams", 2).read_bytes())  # changed file: new key
    third = align_files(files, cache_dir=cache)
    assert third.n_cached == 3
    assert not torch.equal(third.images[1], first.images[1])


def test_align_files_checks_size_and_handles_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size"):
        align_files([], aligner=FaceAligner(size=160), size=112, cache_dir=tmp_path)
    out = align_files([], size=64, cache_dir=tmp_path)
    assert out.images.shape == (0, 3, 64, 64) and out.paths == [] and out.n_skipped == 0


def test_building_the_detector_leaves_torch_rng_alone() -> None:
    """A cold face cache builds MTCNN mid-setup: its layer init must not shift the training's random stream."""
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    FaceAligner().mtcnn  # built on first use, as align_files does on the first uncached file
    np.testing.assert_array_equal(torch.rand(4).numpy(), expected.numpy())
