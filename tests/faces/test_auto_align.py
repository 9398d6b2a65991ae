"""align: auto | mtcnn | none on faces unlike LFW, tiny images, EXIF orientation, the cache key, OpenCV threads."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from privgan.faces import ALIGN_METHODS, MIN_FACE_PROB, align_files, load_aligned
from privgan.faces.align import MIN_IMAGE_SIDE, TOO_SMALL, FaceAligner
from privgan.faces.cache import NO_FACE, read_rgb


def _files(tree: Path) -> list[Path]:
    return sorted(f for d in sorted(tree.iterdir()) for f in sorted(d.iterdir()))


@pytest.mark.lfw
def test_auto_finds_pre_cropped_grayscale_faces_mtcnn_misses(unlike_lfw_tree: Path, tmp_path: Path) -> None:
    files = _files(unlike_lfw_tree)
    assert len(files) == 60 and {f.suffix for f in files} == {".pgm", ".jpg"}
    mtcnn = load_aligned(files, size=32, align="mtcnn", cache_dir=tmp_path)
    auto = load_aligned(files, size=32, align="auto", cache_dir=tmp_path)
    print(f"\nunlike-LFW fixture, faces found: mtcnn {len(mtcnn.paths)}/60, auto {len(auto.paths)}/60 "
          f"({len(auto.whole)} taken whole)")
    assert len(mtcnn.paths) <= 30, mtcnn.summary()  # MTCNN at 0.95 misses most tight grayscale crops
    assert len(auto.paths) >= 54, auto.summary()  # >= 90 %
    # the 176 px JPEGs are above the small-image rule: auto found those faces by detection
    big = [f for f in files if f.suffix == ".jpg"]
    assert sum(p in set(big) for p in auto.paths) >= 0.9 * len(big)
    assert auto.images.shape == (len(auto.paths), 3, 32, 32)
    # a pre-cropped face is taken whole, as align="none" takes it: nothing warped in from outside the frame
    assert set(auto.whole) == set(auto.paths)
    none = load_aligned(auto.paths, size=32, align="none")
    assert (auto.images - none.images).abs().mean() < 0.01


@pytest.mark.lfw
def test_auto_gives_mtcnn_crops_on_ordinary_photos(lfw_dir: Path, tmp_path: Path) -> None:
    files = [lfw_dir / n / f"{n}_0001.jpg" for n in ("Colin_Powell", "Tony_Blair", "Serena_Williams")]
    m = align_files(files, align="mtcnn", cache_dir=tmp_path)
    a = align_files(files, align="auto", cache_dir=tmp_path)
    assert a.paths == m.paths == files and not a.whole
    assert torch.equal(a.images, m.images)


def test_align_methods_and_threshold_are_checked() -> None:
    assert ALIGN_METHODS == ("auto", "mtcnn", "none") and MIN_FACE_PROB == 0.95
    with pytest.raises(ValueError, match="auto, mtcnn, none.*'dlib'"):
        load_aligned([], size=8, align="dlib")
    with pytest.raises(ValueError, match="min_face_prob"):
        load_aligned([], size=8, min_face_prob=1.5)
    assert FaceAligner(mode="auto").version != FaceAligner(mode="mtcnn").version
    assert FaceAligner(min_prob=0.8).version != FaceAligner().version
    with pytest.raises(ValueError, match="mode"):
        FaceAligner(mode="none")


@pytest.mark.parametrize("align", ["mtcnn", "auto"])
def test_tiny_images_are_a_counted_skip_naming_the_file(tmp_path: Path, caplog: pytest.LogCaptureFixture, align: str) -> None:
    tiny = tmp_path / "tiny_face.png"
    Image.new("RGB", (12, 12), (200, 150, 120)).save(tiny)
    thin = tmp_path / "thin.jpg"
    Image.new("L", (300, MIN_IMAGE_SIDE - 1), 90).save(thin)
    with caplog.at_level(logging.WARNING):
        res = align_files([tiny, thin], align=align, cache_dir=tmp_path / "cache")
        res2 = load_aligned([tiny], size=32, align=align, cache_dir=tmp_path / "cache")
    assert res.skipped[TOO_SMALL] == [str(tiny), str(thin)] and res2.skipped[TOO_SMALL] == [str(tiny)]
    assert len(res.paths) == 0 and res.n_skipped == 2 and "too small: 2" in res.summary()
    assert "tiny_face.png" in caplog.text and "thin.jpg" in caplog.text and "too small" in caplog.text
    assert FaceAligner(mode=align).process(Image.new("RGB", (8, 8))) == (None, TOO_SMALL)


def test_exif_orientation_is_applied_where_images_are_read(tmp_path: Path) -> None:
    side = Image.new("RGB", (40, 20), (0, 0, 255))  # stored 40 wide x 20 high, red left
    side.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view: upright it is 20 wide x 40 high, red on top
    side.save(p := tmp_path / "phone.jpg", exif=exif, quality=95)
    img = read_rgb(p)
    assert img.size == (20, 40)
    arr = np.asarray(img)
    assert arr[:15, :, 0].mean() > 200 and arr[-15:, :, 0].mean() < 60
    assert read_rgb(p.read_bytes()).size == (20, 40)


@pytest.mark.lfw
def test_a_symlinked_folder_hits_the_cache(lfw_dir: Path, tmp_path: Path) -> None:
    real = tmp_path / "real" / "Colin_Powell"
    real.mkdir(parents=True)
    for f in sorted((lfw_dir / "Colin_Powell").iterdir())[:2]:
        shutil.copy(f, real / f.name)
    link = tmp_path / "link"
    os.symlink(tmp_path / "real", link)
    cache = tmp_path / "cache"
    first = align_files(sorted(real.iterdir()), cache_dir=cache)
    assert len(first.paths) == 2 and first.n_cached == 0
    fresh = FaceAligner()
    second = align_files(sorted((link / "Colin_Powell").iterdir()), aligner=fresh, cache_dir=cache)
    assert second.n_cached == 2 and fresh._mtcnn is None  # answered from the cache of the real files
    assert torch.equal(second.images, first.images)
    assert all(str(p).startswith(str(link)) for p in second.paths)  # reported under the path the caller gave
    # the key is the content too: same path, new content -> aligned again
    (real / sorted(real.iterdir())[0].name).write_bytes((lfw_dir / "Tony_Blair" / "Tony_Blair_0001.jpg").read_bytes())
    third = align_files(sorted(real.iterdir()), cache_dir=cache)
    assert third.n_cached == 1


@pytest.mark.lfw
def test_min_face_prob_is_the_detection_threshold(unlike_lfw_tree: Path, tmp_path: Path) -> None:
    files = [f for f in _files(unlike_lfw_tree) if f.suffix == ".pgm"][:10]
    strict = align_files(files, align="mtcnn", min_face_prob=0.95, cache_dir=tmp_path)
    loose = align_files(files, align="mtcnn", min_face_prob=0.0, cache_dir=tmp_path)
    assert len(loose.paths) >= len(strict.paths) and len(strict.skipped[NO_FACE]) >= len(loose.skipped[NO_FACE])


def test_sface_sets_opencv_threads_from_torch() -> None:
    cv2 = pytest.importorskip("cv2")
    from privgan.faces.embedders import build_embedder

    before_torch, before_cv = torch.get_num_threads(), cv2.getNumThreads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            emb = build_embedder("sface")
            assert cv2.getNumThreads() == n and emb.num_threads == n
    finally:
        torch.set_num_threads(before_torch)
        cv2.setNumThreads(before_cv)
