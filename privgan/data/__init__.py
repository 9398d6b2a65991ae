"""Data: identity-folder DataModules and seeded member / non-member manifests."""

from privgan.data.face_datamodule import FaceIdentityDataModule, LabeledImages
from privgan.data.gan_faces import GanFaceDataModule
from privgan.data.manifest import SplitError, SplitManifest, make_split
from privgan.data.reference_folder import ReferenceFolder

__all__ = ["FaceIdentityDataModule", "GanFaceDataModule", "LabeledImages", "ReferenceFolder", "SplitError", "SplitManifest", "make_split"]
