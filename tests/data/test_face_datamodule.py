"""FaceIdentityDataModule on real LFW faces: alignment, bad files skipped and counted, splits."""

import pytest
import torch

from privgan.data import FaceIdentityDataModule
from privgan.data.manifest import SplitError

pytestmark = pytest.mark.lfw


def test_datamodule_on_small_tree(small_face_tree):
    from tests.lfw_helpers import one_thread

    dm = FaceIdentityDataModule(root=str(small_face_tree), n_identities=4, min_images=8, max_images=None,
                                aux_identities=6, aux_max_images=2, image_size=32, batch_size=4)
    with one_thread():
        dm.setup("fit")
    assert dm.num_classes == 4
    mem, non = dm.members(), dm.nonmembers()
    assert mem.images.shape[1:] == (3, 32, 32) and mem.images.dtype == torch.float32
    assert 0 <= mem.images.min() and mem.images.max() <= 1
    assert set(mem.labels.tolist()) == set(range(4)) == set(non.labels.tolist())
    # every file of the 4 identities is in the split, so the 3 bad ones are skipped and counted
    skipped = sorted(f.rsplit("/", 1)[-1] for v in dm.skipped.values() for f in v)
    assert skipped == ["not_an_image.jpg", "truncated.jpg", "zero_bytes.jpg"]
    assert len(mem) + len(non) == 4 * 8
    assert len(dm.auxiliary()) == 12 and len(dm.auxiliary_labels().unique()) == 6
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32)
    assert not hasattr(dm, "poisson_sampling")  # the DP wiring Poisson-samples any datamodule


def test_bad_files_are_reported_by_reason(small_face_tree):
    from privgan.faces.cache import align_files

    files = [small_face_tree / "Colin_Powell" / "zero_bytes.jpg", small_face_tree / "Tony_Blair" / "not_an_image.jpg",
             small_face_tree / "Donald_Rumsfeld" / "truncated.jpg"]
    res = align_files(files)
    assert len(res.paths) == 0 and res.n_skipped == 3


def test_too_few_images_error_has_counts(small_face_tree):
    dm = FaceIdentityDataModule(root=str(small_face_tree), n_identities=8, min_images=8, aux_identities=0)
    with pytest.raises(SplitError, match="found 4"):
        dm.setup("fit")


def test_pre_cropped_grayscale_pgm_faces_with_align_auto(unlike_lfw_tree):
    from tests.lfw_helpers import one_thread

    with pytest.raises(ValueError, match="align must be one of auto, mtcnn, none"):
        FaceIdentityDataModule(align="yes")
    dm = FaceIdentityDataModule(root=str(unlike_lfw_tree), n_identities=6, min_images=8, max_images=None,
                                aux_identities=6, aux_max_images=2, image_size=32)
    assert dm.hparams.align == "auto" and dm.hparams.min_face_prob == 0.95
    with one_thread():
        dm.setup("fit")
    assert len(dm.members()) + len(dm.nonmembers()) >= 0.9 * 48 and len(dm.auxiliary()) >= 10
    assert sum(map(len, dm.skipped.values())) <= 5
