"""Seeded synthetic identity data with exact ground truth, for tests and dry runs (no faces needed)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from privgan.data.identity_folders import LabeledImages
from privgan.validation import check_int, check_number


def smooth_images(n: int, size: int, *, generator: torch.Generator, coarse: int = 4) -> torch.Tensor:
    """n random smooth RGB images in [0, 1]: low-resolution noise upsampled bilinearly."""
    low = torch.rand(n, 3, coarse, coarse, generator=generator)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


class SyntheticIdentityDataModule(L.LightningDataModule):
    """K "identities", each a smooth prototype; an image is its prototype plus pixel noise.

    Same interface as FaceIdentityDataModule (members / nonmembers / auxiliary), so every
    callback runs on it. ``random_labels=True`` gives each image a random label: a model can
    only fit those by memorising, the planted truth for membership attacks.
    """

    def __init__(
        self,
        *,
        n_identities: int = 4,
        per_identity: int = 16,
        aux_images: int = 64,
        image_size: int = 16,
        noise: float = 0.1,
        random_labels: bool = False,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        for name, v, low in (("n_identities", n_identities, 2), ("per_identity", per_identity, 2), ("aux_images", aux_images, 0),
                             ("image_size", image_size, 4), ("batch_size", batch_size, 1)):
            check_int(owner, name, v, minimum=low)
        check_number(owner, "noise", noise, minimum=0.0)
        self.save_hyperparameters()
        self._ready = False

    @property
    def num_classes(self) -> int:
        return self.hparams.n_identities

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        hp = self.hparams
        g = torch.Generator().manual_seed(hp.seed)
        protos = smooth_images(hp.n_identities, hp.image_size, generator=g)
        labels = people = torch.arange(hp.n_identities).repeat_interleave(hp.per_identity)
        imgs = (protos[labels] + hp.noise * torch.randn(len(labels), 3, hp.image_size, hp.image_size, generator=g)).clamp(0, 1)
        if hp.random_labels:
            labels = torch.randint(0, hp.n_identities, (len(labels),), generator=g)
        perm = torch.randperm(len(labels), generator=g)
        half = len(perm) // 2
        self._train = LabeledImages(imgs[perm[:half]], labels[perm[:half]])
        self._heldout = LabeledImages(imgs[perm[half:]], labels[perm[half:]])
        self._train_people = people[perm[:half]]  # whose prototype each training image is (labels may be random)
        aux_protos = smooth_images(hp.aux_images, hp.image_size, generator=g)
        self._aux = (aux_protos + hp.noise * torch.randn(aux_protos.shape, generator=g)).clamp(0, 1)
        self._ready = True

    def members(self) -> LabeledImages:
        return self._train

    @property
    def train_identities(self) -> torch.Tensor:
        """The 'person' (prototype) of each training image, in train_dataloader's dataset order (person-level DP-SGD)."""
        return self._train_people

    def nonmembers(self) -> LabeledImages:
        return self._heldout

    def auxiliary(self) -> torch.Tensor:
        return self._aux

    def auxiliary_labels(self) -> torch.Tensor:
        return torch.arange(len(self._aux))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self._train.images, self._train.labels), batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self._heldout.images, self._heldout.labels), batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
