"""GanFaceDataModule on real LFW faces: identity splits, references the GAN never sees, bad files."""

import shutil

import pytest
import torch

from privgan.data.gan_faces import GanFaceDataModule, GanSplitManifest
from privgan.data.manifest import SplitError
from tests.lfw_helpers import one_thread

BIG = {"Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder"}  # 8 good photos each in small_face_tree


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def test_bad_arguments():
    with pytest.raises(ValueError, match="design"):
        GanFaceDataModule(design="skewed")
    with pytest.raises(ValueError, match="over_train_images"):
        GanFaceDataModule(design="overrepresented", train_images=8, over_train_images=8)
    with pytest.raises(ValueError, match="reference_images"):
        GanFaceDataModule(reference_images=0)
    with pytest.raises(RuntimeError, match="setup"):
        GanFaceDataModule().train_images()


@pytest.mark.lfw
def test_balanced_split_on_small_tree(small_face_tree, tmp_path):
    dm = GanFaceDataModule(root=str(small_face_tree), n_member_identities=2, n_nonmember_identities=2,
                           train_images=4, reference_images=3, image_size=32, batch_size=4)
    dm.setup("fit")
    mem, non = dm.member_identities, dm.nonmember_identities
    assert len(mem) == 2 and len(non) == 2 and set(mem) | set(non) == BIG
    x = dm.train_images()
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert dm.member_train_labels().tolist() == [0] * 4 + [1] * 4
    assert dm.member_train_counts().tolist() == [4, 4]
    rx, ry = dm.member_references()
    assert rx.shape == (6, 3, 32, 32) and ry.tolist() == [0, 0, 0, 1, 1, 1]
    nx, ny = dm.nonmember_references()
    assert len(nx) == 6 and ny.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(dm.nonmember_images()[0]) == 6 + 8 and len(dm.heldout_images()) == 6 + 14
    assert dm.overrepresented_identities == []
    # the GAN never sees a reference photo
    man = dm.manifest_
    for name in mem:
        assert not set(man.train[name]) & set(man.member_references[name])
    # every file of the 4 chosen identities was tried, so the 3 bad ones are skipped and counted
    skipped = sorted(f.rsplit("/", 1)[-1] for v in dm.skipped.values() for f in v)
    assert skipped == ["not_an_image.jpg", "truncated.jpg", "zero_bytes.jpg"]
    (batch,) = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, 32, 32)
    # the saved manifest rebuilds the same split
    path = man.save(tmp_path / "manifest.json")
    again = GanFaceDataModule(manifest=str(path), image_size=32)
    again.setup()
    assert again.member_identities == mem and torch.equal(again.train_images(), x)
    assert torch.equal(again.nonmember_references()[0], nx)
    assert GanSplitManifest.load(path).counts()["train_images"] == 8


@pytest.mark.lfw
def test_overrepresented_design(small_face_tree):
    dm = GanFaceDataModule(root=str(small_face_tree), design="overrepresented", n_overrepresented=1, over_train_images=5,
                           n_member_identities=3, n_nonmember_identities=3, train_images=1, reference_images=1, image_size=32)
    dm.setup()
    over = dm.overrepresented_identities
    assert len(over) == 1 and over[0] in BIG and dm.member_identities[0] == over[0]
    assert dm.member_train_counts().tolist() == [5, 1, 1, 1]
    assert len(dm.member_references()[0]) == 4 and len(dm.nonmember_references()[0]) == 3
    assert not set(dm.member_identities) & set(dm.nonmember_identities)


@pytest.mark.lfw
def test_too_few_identities_error_has_counts(small_face_tree):
    dm = GanFaceDataModule(root=str(small_face_tree), n_member_identities=3, n_nonmember_identities=2, train_images=4, reference_images=3)
    with pytest.raises(SplitError, match="found 4"):
        dm.setup()
    dm = GanFaceDataModule(root=str(small_face_tree), design="overrepresented", n_overrepresented=1, over_train_images=10,
                           n_member_identities=1, train_images=1, reference_images=3)
    with pytest.raises(SplitError, match="over-represented identities with at least 13 images, found 0"):
        dm.setup()


@pytest.mark.lfw
def test_identity_without_usable_faces_is_replaced(small_face_tree, tmp_path):
    root = tmp_path / "tree"
    for name in ("Hugo_Chavez", "Ariel_Sharon", "Jean_Chretien"):
        shutil.copytree(small_face_tree / name, root / name)
    for name in ("Broken_Person", "Empty_Person"):
        (root / name).mkdir()
        (root / name / "a.jpg").write_text("not an image")
        (root / name / "b.jpg").write_bytes(b"")
    dm = GanFaceDataModule(root=str(root), n_member_identities=2, n_nonmember_identities=1, train_images=1, reference_images=1)
    dm.setup()
    assert set(dm.member_identities) | set(dm.nonmember_identities) == {"Hugo_Chavez", "Ariel_Sharon", "Jean_Chretien"}
    assert dm.dropped and set(dm.dropped) <= {"Broken_Person", "Empty_Person"}
    assert all("0 usable faces" in why for why in dm.dropped.values())
    assert sum(len(v) for v in dm.skipped.values()) == 2 * len(dm.dropped)


def test_max_tries_per_identity_is_checked_at_construction():
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_tries_per_identity must be >= 1"):
            GanFaceDataModule(max_tries_per_identity=bad)
    with pytest.raises(ValueError, match="align must be one of auto, mtcnn, none"):
        GanFaceDataModule(align="dlib")
    with pytest.raises(ValueError, match="min_face_prob"):
        GanFaceDataModule(min_face_prob=-0.1)


@pytest.mark.lfw
def test_pre_cropped_faces_need_align_auto_and_the_error_says_how_many_files_were_tried(unlike_lfw_tree):
    kw = dict(root=str(unlike_lfw_tree), n_member_identities=2, n_nonmember_identities=2, train_images=4, reference_images=3,
              image_size=32)
    with pytest.raises(SplitError) as err:
        GanFaceDataModule(align="mtcnn", **kw).setup()
    msg = str(err.value)
    assert "among up to 14 files tried per identity (max_tries_per_identity null: 2 x 7 needed)" in msg
    assert "in 8 files tried of 8" in msg and "no face" in msg and "align='auto'" in msg
    dm = GanFaceDataModule(max_tries_per_identity=3, **kw)  # fewer than needed: the 7 needed are tried
    dm.setup()
    assert len(dm.member_identities) == 2 and dm.train_images().shape == (8, 3, 32, 32)
    assert dm.n_tried == 4 * 7 and not dm.dropped
