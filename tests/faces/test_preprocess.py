"""The one face preprocessing: load_aligned (auto | mtcnn | none) and the one named resizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from privgan.faces import ALIGN_METHODS, RESIZE_METHOD, align_files, load_aligned, resize_faces
from privgan.faces.cache import EMPTY, MISSING, NO_FACE, UNREADABLE


def test_resize_faces_is_the_named_bilinear_antialiased_resizer():
    assert RESIZE_METHOD == "torch-bilinear-antialias" and ALIGN_METHODS == ("auto", "mtcnn", "none")
    x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    assert resize_faces(x, 40) is x  # nothing to do, nothing done
    y = resize_faces(x, 16)
    assert y.shape == (2, 3, 16, 16) and 0 <= y.min() and y.max() <= 1
    assert torch.equal(y, F.interpolate(x, size=(16, 16), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1))
    # antialiasing: a 1-pixel checkerboard shrinks to its mean, not to aliased stripes
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None]) % 2
    small = resize_faces(checker.float().expand(1, 3, 32, 32), 8)
    assert torch.allclose(small, torch.full_like(small, 0.5), atol=0.02)


def test_none_takes_crops_as_they_are_upright_rgb_and_counts_bad_files(tmp_path: Path):
    files = []
    Image.new("RGB", (24, 24), (255, 0, 0)).save(p := tmp_path / "red.png")
    files.append(p)
    Image.new("L", (30, 20), 128).save(p := tmp_path / "grey.png")  # greyscale, not square
    files.append(p)
    # stored 20 wide x 10 high, red left / blue right, with EXIF "rotate 90° clockwise to view": upright, red is on top
    side = Image.new("RGB", (20, 10), (0, 0, 255))
    side.paste((255, 0, 0), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    side.save(p := tmp_path / "rotated.jpg", exif=exif, quality=95)
    files.append(p)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    files += [tmp_path / "empty.jpg", tmp_path / "text.jpg", tmp_path / "missing.jpg"]

    res = load_aligned(files, size=8, align="none")
    assert res.images.shape == (3, 3, 8, 8) and res.images.dtype == torch.float32
    assert 0 <= res.images.min() and res.images.max() <= 1
    assert res.paths == files[:3]
    assert torch.allclose(res.images[0], torch.tensor([1.0, 0, 0]).view(3, 1, 1).expand(3, 8, 8))
    assert torch.allclose(res.images[1], torch.full((3, 8, 8), 128 / 255), atol=1e-6)
    red = res.images[2, 0]
    assert red[:3].mean() > 0.9 and red[-3:].mean() < 0.1
    assert res.skipped == {MISSING: [str(files[5])], EMPTY: [str(files[3])], UNREADABLE: [str(files[4])]}
    assert load_aligned([], size=8, align="none").images.shape == (0, 3, 8, 8)
    with pytest.raises(ValueError, match="auto, mtcnn, none.*'dlib'"):
        load_aligned(files, size=8, align="dlib")


@pytest.mark.lfw
def test_mtcnn_is_align_files_then_the_one_resizer(small_face_tree: Path, tmp_path: Path):
    files = sorted((small_face_tree / "Tony_Blair").iterdir())[:3] + [small_face_tree / "Tony_Blair" / "not_an_image.jpg"]
    res = load_aligned(files, size=32, align="mtcnn", cache_dir=tmp_path)
    raw = align_files(files, cache_dir=tmp_path)
    assert res.paths == raw.paths and len(res.paths) == 3 and res.skipped[UNREADABLE] == [str(files[-1])]
    assert res.images.shape == (3, 3, 32, 32) and res.images.dtype == torch.float32
    assert torch.equal(res.images, resize_faces(raw.images.float() / 255, 32))
    assert torch.equal(load_aligned(files, size=112, align="mtcnn", cache_dir=tmp_path).images, raw.images.float() / 255)
    assert not res.skipped[NO_FACE]
