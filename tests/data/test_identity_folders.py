"""Identity folder scanners take every image format PIL opens (PGM included), and leave hidden files out."""

from pathlib import Path

import pytest
from PIL import Image

from privgan.data.identity_folders import IMAGE_EXTENSIONS, scan_identity_folders


def test_pgm_and_every_format_pil_opens_are_scanned(tmp_path: Path):
    assert {".pgm", ".ppm", ".pbm", ".pnm", ".tif", ".tiff", ".gif", ".jpg", ".png", ".webp", ".bmp"} <= set(IMAGE_EXTENSIONS)
    assert ".pdf" not in IMAGE_EXTENSIONS  # PIL only writes PDF
    person = tmp_path / "Ann"
    person.mkdir()
    for ext in ("pgm", "PGM", "ppm", "tif", "gif", "jpg", "png"):
        Image.new("L" if ext.lower() in ("pgm", "gif") else "RGB", (24, 24), 120).save(person / f"x_{ext}.{ext}",
                                                                                     format={"pgm": "PPM", "tif": "TIFF"}.get(ext.lower()))
    (person / "notes.txt").write_text("not a photo")
    (person / "._x_jpg.jpg").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    (tmp_path / ".hidden").mkdir()
    Image.new("RGB", (24, 24)).save(tmp_path / ".hidden" / "a.png")
    got = scan_identity_folders(tmp_path)
    assert list(got) == ["Ann"]
    assert sorted(f.name for f in got["Ann"]) == sorted(f"x_{e}.{e}" for e in ("pgm", "PGM", "ppm", "tif", "gif", "jpg", "png"))


def test_a_folder_without_images_names_the_formats(tmp_path: Path):
    (tmp_path / "Ann").mkdir()
    (tmp_path / "Ann" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"any format PIL opens: .jpg, .png, .pgm"):
        scan_identity_folders(tmp_path)


def test_pgm_faces_load_through_the_none_path(tmp_path: Path):
    from privgan.faces import load_aligned

    (tmp_path / "Ann").mkdir()
    Image.new("L", (30, 30), 200).save(tmp_path / "Ann" / "a.pgm")
    files = scan_identity_folders(tmp_path)["Ann"]
    res = load_aligned(files, size=8, align="none")
    assert res.images.shape == (1, 3, 8, 8) and abs(res.images.mean().item() - 200 / 255) < 1e-3


def test_16_bit_pgm_is_scaled_not_clipped(tmp_path: Path):
    import numpy as np

    from privgan.faces import load_aligned

    (tmp_path / "Ann").mkdir()
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "Ann" / "deep.pgm")
    x = load_aligned(scan_identity_folders(tmp_path)["Ann"], size=32, align="none").images
    assert abs(x.mean().item() - 0.5) < 0.02 and x.min() < 0.01 and x.max() > 0.99
