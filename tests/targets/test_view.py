"""The attacker's view: which photos a privgan DataModule or a references folder gives each part, and what is missing."""

import shutil

import pytest
import torch

from privgan.data.reference_folder import ReferenceFolder
from privgan.data.synthetic import SyntheticIdentityDataModule
from privgan.targets.view import PARTS, AttackerView, Photos, view_from
from tests.lfw_helpers import one_thread


@pytest.fixture(scope="module")
def synthetic():
    dm = SyntheticIdentityDataModule(n_identities=3, per_identity=8, aux_images=10, image_size=16)
    dm.setup("fit")
    return dm


def test_view_of_a_split_style_datamodule(synthetic):
    view = view_from(synthetic)
    # members = training photos, heldout = other photos of the same people (the datamodule calls them nonmembers())
    assert torch.equal(view.members.images, synthetic.members().images)
    assert torch.equal(view.members.labels, synthetic.members().labels)
    assert torch.equal(view.heldout.images, synthetic.nonmembers().images)
    assert torch.equal(view.auxiliary.images, synthetic.auxiliary())
    assert torch.equal(view.auxiliary.labels, torch.arange(10))
    assert view.nonmembers is None and view.nonmember_references is None  # no unseen identities in this design
    assert len(view.members) == len(view.heldout) == 12 and set(view.members.labels.tolist()) == {0, 1, 2}
    # a source without identity names: every label still has one, the same in members and held-out
    assert view.members.names == () and view.members.name(2) == "id2" == view.heldout.name(2)
    assert view.source == "SyntheticIdentityDataModule" and view.overrepresented == ()
    assert view.require(("members", "heldout", "auxiliary"), who="the inversion attack") is None


def test_view_reads_only_what_is_needed_and_resizes(synthetic):
    view = view_from(synthetic, needs=("members",), image_size=8)
    assert view.members.images.shape[1:] == (3, 8, 8) and view.heldout is None and view.auxiliary is None
    assert view_from(view) is view  # a view is its own view
    with pytest.raises(ValueError) as e:
        view.require(("members", "heldout", "auxiliary"), who="the inversion attack")
    msg = str(e.value)
    assert msg.startswith("the inversion attack needs heldout, auxiliary photos") and "SyntheticIdentityDataModule" in msg
    assert "heldout/, auxiliary/" in msg  # the folders a references folder would need


def test_require_names_exactly_what_is_missing():
    photos = Photos(torch.rand(4, 3, 8, 8), torch.tensor([0, 0, 1, 1]), ("ann", "bob"))
    view = AttackerView(members=photos, heldout=photos, source="refs/")
    view.require(("members", "heldout"), who="membership")
    with pytest.raises(ValueError) as e:
        view.require(("heldout", "nonmember_references", "auxiliary"), who="identity match")
    msg = str(e.value)
    assert "needs nonmember_references, auxiliary photos" in msg and "(refs/)" in msg
    assert "nonmembers/, auxiliary/" in msg  # non-member references come from the nonmembers/ folder
    assert AttackerView(nonmembers=photos).references_for_identity_match() is photos
    with pytest.raises(ValueError, match="N labels"):
        Photos(torch.rand(4, 3, 8, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="give references="):
        view_from(None)
    with pytest.raises(TypeError, match="offers no photos"):
        view_from(object())


def test_embeddings_of_a_part_are_computed_once_per_embedder():
    class Mean:
        name = "mean"
        calls = 0

        def embed(self, x):
            Mean.calls += 1
            return torch.nn.functional.normalize(x.mean(dim=(2, 3)), dim=1)

    a = Photos(torch.rand(3, 3, 8, 8), torch.arange(3))
    b = Photos(torch.rand(2, 3, 4, 4), torch.arange(2))
    view = AttackerView(heldout=a, nonmembers=b)
    e = view.embeddings("heldout", Mean())
    assert e.shape == (3, 3) and view.embeddings("heldout", Mean()) is e and Mean.calls == 1
    unseen = view.unseen()  # held-out and non-member photos together, at the held-out size
    assert unseen.shape == (5, 3, 8, 8) and torch.equal(unseen[:3], a.images)
    assert view.embeddings("unseen", Mean()).shape == (5, 3)
    with pytest.raises(ValueError, match="no held-out or non-member"):
        AttackerView(members=a).unseen()


@pytest.fixture(scope="module")
def reference_folder(small_face_tree, tmp_path_factory):
    """members/ and heldout/ of two people, nonmembers/ of two others, no auxiliary/: a few LFW photos each."""
    root = tmp_path_factory.mktemp("refs")
    plan = {"members": {"Tony_Blair": (0, 2), "Colin_Powell": (0, 2)},
            "heldout": {"Tony_Blair": (2, 4), "Colin_Powell": (2, 5)},
            "nonmembers": {"Gerhard_Schroeder": (0, 2), "Donald_Rumsfeld": (0, 3)}}
    for part, people in plan.items():
        for name, (a, b) in people.items():
            (root / part / name).mkdir(parents=True)
            for f in sorted(p for p in (small_face_tree / name).iterdir() if p.name.startswith(name))[a:b]:  # real photos
                shutil.copy(f, root / part / name / f.name)
    return root


@pytest.mark.lfw
def test_view_of_a_reference_folder(reference_folder):
    with one_thread():
        folder = ReferenceFolder(reference_folder, image_size=32)
        view = view_from(folder, needs=PARTS)
    assert view.source == str(reference_folder)
    # members and held-out share one label order (the sorted names), so a label means one person in both
    assert view.members.names == view.heldout.names == ("Colin_Powell", "Tony_Blair")
    assert view.members.labels.tolist() == [0, 0, 1, 1]
    assert sorted(view.heldout.labels.tolist()) == [0, 0, 0, 1, 1]
    assert view.nonmembers.names == ("Donald_Rumsfeld", "Gerhard_Schroeder")
    assert [view.nonmembers.name(int(l)) for l in view.nonmembers.labels] == ["Donald_Rumsfeld"] * 3 + ["Gerhard_Schroeder"] * 2
    assert torch.equal(view.nonmember_references.images, view.nonmembers.images)  # a folder has no separate pool
    assert view.members.images.shape == (4, 3, 32, 32) and 0 <= view.members.images.min() and view.members.images.max() <= 1
    assert view.auxiliary is None  # no auxiliary/ folder: left out, not an error until an attack needs it
    view.require(("heldout", "nonmember_references"), who="the identity match attack")
    with pytest.raises(ValueError, match=r"the inversion attack needs auxiliary photos.*auxiliary/"):
        view.require(("members", "heldout", "auxiliary"), who="the inversion attack")
    # a path works too, read at the image size asked for
    again = view_from(str(reference_folder), needs=("heldout",), image_size=16)
    assert again.heldout.images.shape == (5, 3, 16, 16) and again.members is None
