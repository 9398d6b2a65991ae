"""ReferenceFolder reads photos through the one face preprocessing (load_aligned)."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from privgan.data import ReferenceFolder
from privgan.data.reference_folder import DroppedPhotosError
from tests.lfw_helpers import one_thread


def test_align_names_the_method_and_false_still_means_none(tmp_path):
    (tmp_path / "members" / "a").mkdir(parents=True)
    Image.new("RGB", (20, 20), (0, 255, 0)).save(tmp_path / "members" / "a" / "x.png")
    (tmp_path / "members" / "a" / "broken.jpg").write_text("not an image")
    for align in ("none", False):
        refs = ReferenceFolder(tmp_path, image_size=8, align=align)
        assert refs.align == "none"
        with pytest.warns(UserWarning, match="skipped 1 of 2 photos"):
            x = refs.members().images
        assert x.shape == (1, 3, 8, 8) and torch.allclose(x[0, 1], torch.ones(8, 8))
        assert [k for k, v in refs.skipped.items() if v] == ["unreadable"]
    assert ReferenceFolder(tmp_path).align == "auto" and ReferenceFolder(tmp_path, align=True).align == "mtcnn"
    with pytest.raises(ValueError, match="auto, mtcnn, none.*'dlib'"):
        ReferenceFolder(tmp_path, align="dlib")
    with pytest.raises(ValueError, match="min_face_prob"):
        ReferenceFolder(tmp_path, min_face_prob=2)
    with pytest.raises(ValueError, match="max_dropped"):
        ReferenceFolder(tmp_path, max_dropped=1.5)


def _person(folder: Path, name: str, good: int, bad: int = 0) -> None:
    (folder / name).mkdir(parents=True)
    for i in range(good):
        Image.new("RGB", (24, 24), (40 * i, 90, 200)).save(folder / name / f"{i}.png")
    for i in range(bad):
        (folder / name / f"bad{i}.jpg").write_text("not an image")


def test_an_identity_with_no_usable_photo_is_named(tmp_path):
    for name in ("Alice", "Bob", "Carol"):
        _person(tmp_path / "heldout", name, good=3)
    _person(tmp_path / "heldout", "Dave_Unusable", good=0, bad=2)
    refs = ReferenceFolder(tmp_path, image_size=8, align="none")
    with pytest.warns(UserWarning) as record:
        h = refs.nonmembers()
    text = " ".join(str(w.message) for w in record)
    assert "no usable photo of 1 identity: Dave_Unusable (2 files: unreadable: 2)" in text
    assert "skipped 2 of 11 photos (18% dropped; unreadable: 2)" in text
    assert refs.unusable["heldout"] == ["Dave_Unusable"]
    assert refs.counts["heldout"] == {"files": 11, "used": 9, "dropped": 2, "dropped_share": 2 / 11}
    assert len(h) == 9 and refs.member_identities == ["Alice", "Bob", "Carol", "Dave_Unusable"]


def test_a_part_that_lost_more_than_half_its_photos_is_refused(tmp_path):
    _person(tmp_path / "members", "Alice", good=2, bad=3)
    with pytest.warns(UserWarning, match="60% dropped"), pytest.raises(DroppedPhotosError) as err:
        ReferenceFolder(tmp_path, image_size=8, align="none").members()
    msg = str(err.value)
    assert str(tmp_path / "members") in msg and "3 of 5 photos (60%)" in msg and "max_dropped=0.5" in msg
    assert "max_dropped=1.0" in msg
    with pytest.warns(UserWarning, match="60% dropped"):
        assert len(ReferenceFolder(tmp_path, image_size=8, align="none", max_dropped=1.0).members()) == 2
    with pytest.warns(UserWarning):
        assert len(ReferenceFolder(tmp_path, image_size=8, align="none", max_dropped=None).members()) == 2
    with pytest.warns(UserWarning), pytest.raises(DroppedPhotosError):
        ReferenceFolder(tmp_path, image_size=8, align="none", max_dropped=0.2).members()


@pytest.mark.lfw
def test_pre_cropped_references_mtcnn_refuses_and_auto_reads_them(unlike_lfw_tree, tmp_path):
    """A references folder of tight grayscale crops (PGM and JPEG): MTCNN alone loses most; the refusal names the fix."""
    import os

    people = sorted(p.name for p in unlike_lfw_tree.iterdir())[:3]
    (tmp_path / "heldout").mkdir()
    for name in people:
        os.symlink(unlike_lfw_tree / name, tmp_path / "heldout" / name)
    with one_thread(), pytest.warns(UserWarning, match="dropped"), pytest.raises(DroppedPhotosError) as err:
        ReferenceFolder(tmp_path, image_size=32, align="mtcnn").nonmembers()
    msg = str(err.value)
    assert "heldout" in msg and "of 24 photos" in msg and "no face" in msg and "align='auto'" in msg and "align='none'" in msg
    with one_thread():
        h = ReferenceFolder(tmp_path, image_size=32).nonmembers()  # align="auto", the default
    assert len(h) >= 22 and sorted(set(h.labels.tolist())) == [0, 1, 2]
