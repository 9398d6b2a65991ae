"""Data: identity-folder DataModules and seeded member / non-member manifests."""

from privgan.data.face_datamodule import FaceIdentityDataModule, LabeledImages
from privgan.data.manifest import SplitError, SplitManifest, make_split

__all__ = ["FaceIdentityDataModule", "LabeledImages", "SplitError", "SplitManifest", "make_split"]
