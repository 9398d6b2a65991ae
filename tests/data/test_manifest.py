"""Seeded identity splits: disjoint, repeatable, clear errors with counts."""

import time
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


@pytest.mark.lfw
def test_datamodule_writes_the_manifest_and_only_the_opt_in_callback_logs_it(small_face_tree, tmp_path):
    import lightning as L
    from google.protobuf.message import DecodeError
    from lightning.pytorch.loggers import WandbLogger

    from privgan.callbacks import MemberManifestArtifact
    from privgan.data import FaceIdentityDataModule
    from privgan.modules import SplitClassifier
    from tests.wandb_records import read_records, run_contents

    def fit(run: Path, callbacks: list) -> dict:
        logger = WandbLogger(save_dir=str(run), offline=True)
        dm = FaceIdentityDataModule(root=str(small_face_tree), n_identities=4, min_images=8, max_images=None,
                                    aux_identities=2, aux_max_images=1, image_size=32, batch_size=8)
        L.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, logger=logger, callbacks=callbacks,
                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                  default_root_dir=run).fit(SplitClassifier(width=8), dm)
        logger.experiment.finish()
        assert len(SplitManifest.load(run / "manifest.json").identities) == 4  # always written, locally
        (log,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
        for _ in range(100):  # W&B's service process may still be writing the log after finish() returns
            try:
                if read_records(log)[-1].WhichOneof("record_type") == "exit":
                    break
            except (ValueError, IndexError, DecodeError):  # header or last record not written yet
                pass
            time.sleep(0.1)
        return run_contents(log)

    assert fit(tmp_path / "default", [])["artifacts"] == []  # real people's names stay out of W&B by default
    arts = fit(tmp_path / "opt_in", [MemberManifestArtifact()])["artifacts"]
    assert len(arts) == 1 and arts[0][0].startswith("member-manifest-") and arts[0][1] == "manifest", arts
