"""Seeded identity splits: disjoint, repeatable, clear errors with counts."""

from pathlib import Path

import pytest

from privgan.data.identity_folders import scan_identity_folders
from privgan.data.manifest import SplitError, SplitManifest, make_split
from privgan.paths import MissingDataError


def _folders(counts):
    return {f"id{i:02d}": [Path(f"/x/id{i:02d}/{j}.jpg") for j in range(c)] for i, c in enumerate(counts)}


def test_split_is_seeded_disjoint_and_saved(tmp_path):
    f = _folders([10] * 6 + [2] * 20)
    a = make_split(f, root="/x", n_identities=4, min_images=10, aux_identities=5, seed=1)
    b = make_split(f, root="/x", n_identities=4, min_images=10, aux_identities=5, seed=1)
    assert a == b
    assert a != make_split(f, root="/x", n_identities=4, min_images=10, aux_identities=5, seed=2)
    for name in a.identities:
        assert not set(a.train[name]) & set(a.heldout[name])
        assert len(a.train[name]) == 5
    assert not set(a.auxiliary) & set(a.identities)
    assert SplitManifest.load(a.save(tmp_path / "m.json")) == a
    assert a.counts()["auxiliary_identities"] == 5


def test_too_few_identities_gives_counts():
    with pytest.raises(SplitError, match=r"need 5 identities with at least 10 usable images, found 2"):
        make_split(_folders([12, 10, 3]), root="/x", n_identities=5, min_images=10)


def test_too_few_aux_identities():
    with pytest.raises(SplitError, match="auxiliary"):
        make_split(_folders([10, 10, 1]), root="/x", n_identities=2, min_images=10, aux_identities=3)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(MissingDataError, match="does_not_exist"):
        scan_identity_folders(tmp_path / "does_not_exist")


def test_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="no identity folders"):
        scan_identity_folders(tmp_path)


def test_bad_manifest_file_is_named(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        SplitManifest.load(p)


def test_manifest_kinds_are_not_confused(tmp_path):
    from privgan.data.gan_faces import GanSplitManifest

    gan = GanSplitManifest(root="r", seed=0, design="balanced", members=["a"], nonmembers=["b"], train={"a": ["a/1.jpg"]},
                           member_references={"a": ["a/2.jpg"]}, nonmember_references={"b": ["b/1.jpg"]})
    path = gan.save(tmp_path / "m.json")
    assert GanSplitManifest.load(path) == gan
    with pytest.raises(ValueError, match=r"m.json.*'gan_identity_split' manifest, not 'identity_split'"):
        SplitManifest.load(path)
