"""`privgan data fetch lfw` through its real download path, served from local files (file://)."""

import io
import tarfile

import pytest

from privgan.cli import main
from privgan.data.identity_folders import scan_identity_folders


def _mirror(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / "lfw-deepfunneled.tgz", "w:gz") as tf:
        for name in ("Ann_A", "Bob_B"):
            for i in (1, 2):
                data = b"\xff\xd8fake"
                info = tarfile.TarInfo(f"lfw-deepfunneled/{name}/{name}_{i:04d}.jpg")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    (mirror / "pairs.txt").write_text("1 1\nAnn_A 1 2\nAnn_A 1 Bob_B 1\n")
    return mirror


def test_fetch_lfw_from_a_mirror(tmp_path, capsys):
    mirror = _mirror(tmp_path)
    dest = tmp_path / "data"
    assert main(["data", "fetch", "lfw", "--dest", str(dest), "--base-url", mirror.as_uri()]) == 0
    root = dest / "datasets" / "lfw"
    assert sorted(scan_identity_folders(root / "images_deepfunneled")) == ["Ann_A", "Bob_B"]
    assert (root / "pairs.txt").read_text().startswith("1 1")
    assert "LFW ready" in capsys.readouterr().out
    # a second fetch finds everything in place and downloads nothing
    (mirror / "lfw-deepfunneled.tgz").unlink()
    assert main(["data", "fetch", "lfw", "--dest", str(dest), "--base-url", mirror.as_uri()]) == 0


def test_fetch_failure_names_the_url(tmp_path):
    with pytest.raises(RuntimeError, match="lfw-deepfunneled.tgz"):
        main(["data", "fetch", "lfw", "--dest", str(tmp_path), "--base-url", (tmp_path / "nothing").as_uri()])
