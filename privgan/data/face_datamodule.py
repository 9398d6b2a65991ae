"""LightningDataModule over identity folders: aligned faces, seeded member / non-member split."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from privgan.data.identity_folders import LabeledImages, scan_identity_folders
from privgan.data.manifest import SplitManifest, make_split
from privgan.data.people import people_in_manifest, people_of, refuse_overlap
from privgan.paths import lfw_root
from privgan.validation import check_int, check_number

log = logging.getLogger(__name__)


def default_face_root() -> str:
    """LFW deep-funneled images under ``$PRIVGAN_DATA``."""
    return str(lfw_root() / "images_deepfunneled")


class FaceIdentityDataModule(L.LightningDataModule):
    """Faces of K identities: members train the model, held-out photos are non-members.

    Faces are detected and aligned once (cached on disk) and resized to ``image_size``
    (``privgan.faces.load_aligned``): ``align="auto"`` aligns with MTCNN and takes photos that
    are already face crops whole, ``"mtcnn"`` only aligns, ``"none"`` takes every file as a crop;
    ``min_face_prob`` is MTCNN's threshold. Auxiliary identities, disjoint from the K, are the
    attacker's own data. Bad files (unreadable, empty, too small, no face) are skipped and
    counted in ``skipped`` (a warning gives the counts and the share dropped, and names
    identities left with no usable photo). The split is saved as ``manifest.json`` in the
    trainer's ``default_root_dir``. ``exclude_people_of``: split manifests (a study's
    ``manifest.json``) whose people this data set must not contain, in any part: public
    pretraining data kept clear of the study (``privgan.data.people``).
    """

    def __init__(
        self,
        *,
        root: str | None = None,
        n_identities: int = 32,
        min_images: int = 30,
        max_images: int | None = 40,
        train_fraction: float = 0.5,
        aux_identities: int = 300,
        aux_max_images: int = 4,
        image_size: int = 64,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        manifest: str | None = None,
        align: str = "auto",
        min_face_prob: float = 0.95,
        exclude_people_of: list[str] | None = None,
    ) -> None:
        super().__init__()
        from privgan.faces.preprocess import check_align

        check_align(align, min_face_prob)
        owner = type(self).__name__
        check_int(owner, "n_identities", n_identities, minimum=2)
        check_int(owner, "min_images", min_images, minimum=2)
        check_int(owner, "max_images", max_images, minimum=max(2, min_images if isinstance(min_images, int) else 2), allow_none=True)
        check_number(owner, "train_fraction", train_fraction, minimum=0.0, inclusive=False, maximum=1.0)
        check_int(owner, "aux_identities", aux_identities, minimum=0)
        check_int(owner, "aux_max_images", aux_max_images, minimum=1)
        check_int(owner, "image_size", image_size, minimum=8)
        check_int(owner, "batch_size", batch_size, minimum=1)
        check_int(owner, "num_workers", num_workers, minimum=0)
        self.save_hyperparameters()
        self.root = root or default_face_root()
        self.manifest_: SplitManifest | None = None
        self.skipped: dict[str, list[str]] = {}

    # -- setup -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Split, align (cached) and load all images into memory once."""
        if self.manifest_ is not None:
            return
        hp = self.hparams
        excluded = people_of(hp.exclude_people_of)
        if hp.manifest:
            manifest = SplitManifest.load(hp.manifest)
            refuse_overlap(people_in_manifest(hp.manifest), excluded, public_source=f"manifest {hp.manifest}",
                           study_source=", ".join(hp.exclude_people_of or []))
        else:
            folders = scan_identity_folders(self.root)
            manifest = make_split(
                folders,
                root=self.root,
                n_identities=hp.n_identities,
                min_images=hp.min_images,
                max_images=hp.max_images,
                train_fraction=hp.train_fraction,
                aux_identities=hp.aux_identities,
                aux_max_images=hp.aux_max_images,
                seed=hp.seed,
                exclude=excluded,
            )
            if hp.exclude_people_of:
                manifest = replace(manifest, excluded_people_of=[str(m) for m in hp.exclude_people_of])
        files = [f for part in (manifest.train, manifest.heldout, manifest.auxiliary) for v in part.values() for f in v]
        from privgan.faces.preprocess import load_aligned

        faces = load_aligned(files, size=hp.image_size, align=hp.align, min_face_prob=hp.min_face_prob)
        self.skipped = faces.skipped
        ok = {str(p): i for i, p in enumerate(faces.paths)}
        if any(faces.skipped.values()):
            log.warning("privgan data: %s (align=%r)", faces.summary(), hp.align)
        for what, part in (("member", manifest.train), ("held-out", manifest.heldout)):
            lost = sorted(n for n, fs in part.items() if fs and not any(f in ok for f in fs))
            if lost:
                log.warning("privgan data: no usable %s photo of %d identities: %s", what, len(lost), ", ".join(lost))
        imgs = faces.images

        def gather(part: dict[str, list[str]], labelled: bool) -> LabeledImages:
            idx, lab = [], []
            for k, name in enumerate(manifest.identities if labelled else sorted(part)):
                for f in part.get(name, []):
                    if f in ok:
                        idx.append(ok[f])
                        lab.append(k)
            return LabeledImages(imgs[idx], torch.tensor(lab, dtype=torch.long))

        self._train = gather(manifest.train, True)
        self._heldout = gather(manifest.heldout, True)
        self._aux = gather(manifest.auxiliary, False)
        if len(self._train) == 0 or len(self._heldout) == 0:
            raise ValueError(f"no usable member or held-out faces after alignment in {self.root!r}: {faces.summary()}")
        self.manifest_ = manifest
        if self.trainer is not None and self.trainer.is_global_zero:
            manifest.save(Path(self.trainer.default_root_dir) / "manifest.json")

    # -- what attacks may use -----------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of classifier identities."""
        return self.hparams.n_identities

    @property
    def identity_names(self) -> list[str]:
        """Classifier identity names in label order."""
        self._require_setup()
        return list(self.manifest_.identities)

    @property
    def train_identities(self) -> torch.Tensor:
        """The person each item of ``train_dataloader``'s dataset shows, in order (person-level DP-SGD samples by it)."""
        self._require_setup()
        return self._train.labels

    def members(self) -> LabeledImages:
        """Training images (members) with labels."""
        self._require_setup()
        return self._train

    def nonmembers(self) -> LabeledImages:
        """Held-out images of the same identities (non-members) with labels."""
        self._require_setup()
        return self._heldout

    def auxiliary(self) -> torch.Tensor:
        """Images of identities disjoint from the classifier's (the attacker's own data)."""
        self._require_setup()
        return self._aux.images

    def auxiliary_labels(self) -> torch.Tensor:
        """Identity index of each auxiliary image (to calibrate thresholds on impostor pairs)."""
        self._require_setup()
        return self._aux.labels

    def _require_setup(self) -> None:
        if self.manifest_ is None:
            raise RuntimeError("call setup() first (the Trainer does this)")

    # -- loaders --------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """Shuffled member batches (DP-SGD wiring makes them Poisson-sampled: ``make_private_in_trainer``)."""
        return DataLoader(
            TensorDataset(self._train.images, self._train.labels),
            batch_size=self.hparams.batch_size,
            shuffle=True,
            num_workers=self.hparams.num_workers,
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def val_dataloader(self) -> DataLoader:
        """Held-out photos of the classifier identities (accuracy; non-members)."""
        return DataLoader(TensorDataset(self._heldout.images, self._heldout.labels), batch_size=256)

    def test_dataloader(self) -> DataLoader:
        """Same held-out photos as validation (no hyper-parameters are tuned on them)."""
        return self.val_dataloader()

