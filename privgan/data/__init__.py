"""Data: identity-folder DataModules and seeded member / non-member manifests."""

from privgan.data.face_datamodule import FaceIdentityDataModule, LabeledImages
from privgan.data.gan_faces import GanFaceDataModule
from privgan.data.manifest import SplitError, SplitManifest, make_split

__all__ = ["FaceIdentityDataModule", "GanFaceDataModule", "LabeledImages", "SplitError", "SplitManifest", "make_split"]
