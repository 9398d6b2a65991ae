"""Reference data for attacks on models privgan did not train: a folder instead of a privgan DataModule.

Layout (each part optional; an attack that needs a missing part says which folder to add)::

    root/members/<identity>/*.jpg      photos the model trained on (labels: identity order)
    root/heldout/<identity>/*.jpg      photos of the same identities the model never saw
    root/nonmembers/<identity>/*.jpg   photos of identities outside the training set
    root/auxiliary/<identity>/*.jpg    the attacker's own faces, disjoint from all of the above

Photos go through ``privgan.faces.load_aligned``: with ``align="auto"`` (default) faces are
MTCNN-aligned (disk-cached) and photos that are already face crops are taken whole; ``"mtcnn"``
only aligns; ``"none"`` takes every file as a crop (``True``/``False`` mean ``mtcnn``/``none``);
``min_face_prob`` is MTCNN's threshold. Then they are resized to ``image_size``.

Skipped photos are a warning with the share dropped, and identities left with no usable photo
are named (``unusable``). A part that lost more than ``max_dropped`` (default half) of its
photos raises :class:`DroppedPhotosError` instead of giving an attack a view that no longer
stands for the folder; ``max_dropped=1.0`` allows it. It offers the methods privgan's DataModules offer to attacks:
``members()`` / ``nonmembers()`` / ``auxiliary()`` for split models (``nonmembers`` = the
held-out photos), and ``train_images()`` / ``member_references()`` / ``nonmember_references()``
/ ``heldout_images()`` for GANs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from privgan.data.identity_folders import LabeledImages, scan_identity_folders

PARTS = ("members", "heldout", "nonmembers", "auxiliary")


class DroppedPhotosError(ValueError):
    """A references part lost more of its photos (no face, unreadable, ...) than ``max_dropped`` allows."""


class ReferenceFolder:
    """Members, held-out, non-member and auxiliary photos read from ``root/<part>/<identity>/``."""

    def __init__(self, root: str | os.PathLike, *, image_size: int = 64, align: str | bool = "auto",
                 min_face_prob: float = 0.95, classes: list[str] | None = None, cache_dir: str | None = None,
                 max_dropped: float | None = 0.5) -> None:
        from privgan.faces.preprocess import check_align

        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"reference folder {str(self.root)!r} does not exist")
        present = [p for p in PARTS if (self.root / p).is_dir()]
        if not present:
            raise ValueError(f"{str(self.root)!r} has none of the sub-folders {', '.join(PARTS)} (see privgan.data.reference_folder)")
        self.image_size, self.cache_dir = image_size, cache_dir
        self.align = check_align(align, min_face_prob)
        self.min_face_prob = float(min_face_prob)
        if max_dropped is None:
            max_dropped = 1.0
        if not 0.0 <= max_dropped <= 1.0:
            raise ValueError(f"max_dropped must be a share in [0, 1] (1.0 allows any loss), got {max_dropped!r}")
        self.max_dropped = float(max_dropped)
        self.classes = list(classes) if classes is not None else None
        self.skipped: dict[str, list[str]] = {}
        #: Per part: identities whose every photo was skipped (by name).
        self.unusable: dict[str, list[str]] = {}
        #: Per part: ``{"files": n, "used": n, "dropped": n, "dropped_share": x}``.
        self.counts: dict[str, dict[str, float]] = {}
        self._parts: dict[str, LabeledImages] = {}
        self._names: dict[str, list[str]] = {}
        self._order: list[str] | None = None

    # -- loading ---------------------------------------------------------------------------------
    def _member_order(self) -> list[str]:
        """Member label order shared by members/ and heldout/: ``classes``, else the sorted union of both."""
        if self.classes is not None:
            return self.classes
        if self._order is None:
            names: set[str] = set()
            for part in ("members", "heldout"):
                if (self.root / part).is_dir():
                    names |= set(scan_identity_folders(self.root / part))
            self._order = sorted(names)
        return self._order

    def _load(self, part: str, who: str) -> LabeledImages:
        if part in self._parts:
            return self._parts[part]
        folder = self.root / part
        if not folder.is_dir():
            raise FileNotFoundError(f"{who} needs {str(folder)!r} (<identity>/<photo> folders); it does not exist")
        folders = scan_identity_folders(folder)
        order = self._member_order() if part in ("members", "heldout") else list(folders)
        unknown = sorted(set(folders) - set(order))
        if unknown:
            raise ValueError(f"{str(folder)!r}: identities not in classes: {', '.join(unknown[:5])}")
        imgs, labels, lost = [], [], []
        n_files = n_used = 0
        reasons: dict[str, int] = {}
        for k, name in enumerate(order):
            if name in folders:
                res = self._read(folders[name])
                imgs.append(res.images)
                labels += [k] * len(res.images)
                n_files, n_used = n_files + res.n_files, n_used + len(res.paths)
                for r, v in res.skipped.items():
                    if v:
                        reasons[r] = reasons.get(r, 0) + len(v)
                if not len(res.paths):
                    lost.append(f"{name} ({res.n_files} files: {res.reasons()})")
        dropped = n_files - n_used
        share = dropped / n_files if n_files else 0.0
        why = ", ".join(f"{r}: {c}" for r, c in sorted(reasons.items())) or "none"
        self.counts[part] = {"files": n_files, "used": n_used, "dropped": dropped, "dropped_share": share}
        self.unusable[part] = [x.split(" (", 1)[0] for x in lost]
        if lost:
            warnings.warn(f"privgan references: {str(folder)!r}: no usable photo of {len(lost)} "
                          f"identit{'y' if len(lost) == 1 else 'ies'}: {'; '.join(lost)}", stacklevel=3)
        if dropped:
            warnings.warn(f"privgan references: {str(folder)!r}: skipped {dropped} of {n_files} photos "
                          f"({100 * share:.0f}% dropped; {why}) with align={self.align!r}", stacklevel=3)
        if n_used == 0 or share > self.max_dropped:
            fix = ("use align='none' if every file is already a face crop" if self.align == "auto" else
                   "use align='auto' (takes photos that are already face crops whole) or align='none' (every file is a crop)")
            raise DroppedPhotosError(
                f"{str(folder)!r}: {dropped} of {n_files} photos ({100 * share:.0f}%) gave no usable face ({why}) with "
                f"align={self.align!r}, min_face_prob={self.min_face_prob:g}; that is more than max_dropped="
                f"{self.max_dropped:g}, and an attack on what is left would not stand for this folder. If the photos are "
                f"face crops, {fix}; or lower min_face_prob. To attack anyway, pass max_dropped=1.0."
            )
        images = torch.cat(imgs) if imgs else torch.empty(0, 3, self.image_size, self.image_size)
        self._parts[part] = LabeledImages(images, torch.tensor(labels, dtype=torch.long))
        self._names[part] = order
        return self._parts[part]

    def _read(self, files: list[Path]):
        from privgan.faces.preprocess import load_aligned

        res = load_aligned(files, size=self.image_size, align=self.align, min_face_prob=self.min_face_prob,
                           cache_dir=self.cache_dir)
        for k, v in res.skipped.items():
            self.skipped.setdefault(k, []).extend(v)
        return res

    # -- split models ----------------------------------------------------------------------------
    def members(self) -> LabeledImages:
        """Training photos with identity labels."""
        return self._load("members", "this attack")

    def nonmembers(self) -> LabeledImages:
        """Held-out photos of the training identities, labelled as the members are."""
        return self._load("heldout", "this attack")

    def auxiliary(self) -> torch.Tensor:
        """The attacker's own faces, disjoint from the model's identities."""
        return self._load("auxiliary", "a learned attack (decoder, threshold calibration)").images

    def auxiliary_labels(self) -> torch.Tensor:
        """Identity index of each auxiliary photo."""
        return self._load("auxiliary", "a learned attack").labels

    # -- GANs ------------------------------------------------------------------------------------
    def train_images(self) -> torch.Tensor:
        """The generator's training photos (for LOGAN and GAN-Leaks)."""
        return self._load("members", "GAN membership (LOGAN, GAN-Leaks)").images

    def member_train_labels(self) -> torch.Tensor:
        """Member label of each training photo."""
        return self._load("members", "GAN membership").labels

    def member_train_counts(self) -> torch.Tensor:
        """Training photos per member identity (label order; zeros without members/)."""
        n = len(self._member_order())
        if not (self.root / "members").is_dir():
            return torch.zeros(n, dtype=torch.long)
        return torch.bincount(self.member_train_labels(), minlength=n)

    def member_references(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Photos of training identities the generator never saw, with member labels."""
        h = self._load("heldout", "the identity-match attack")
        return h.images, h.labels

    def nonmember_references(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Photos of identities outside the training set, with non-member labels."""
        n = self._load("nonmembers", "the identity-match attack (the null population)")
        return n.images, n.labels

    def nonmember_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as ``nonmember_references`` (a folder has no separate pool)."""
        return self.nonmember_references()

    def heldout_images(self) -> torch.Tensor:
        """Real faces the model never saw (held-out and non-member photos), for Fréchet distance."""
        parts = [self._load(p, "Fréchet distance").images for p in ("heldout", "nonmembers") if (self.root / p).is_dir()]
        if not parts:
            raise FileNotFoundError(f"Fréchet distance needs {str(self.root / 'heldout')!r} or {str(self.root / 'nonmembers')!r}")
        return torch.cat(parts)

    @property
    def member_identities(self) -> list[str]:
        """Member identity names in label order."""
        return list(self._member_order())

    @property
    def nonmember_identities(self) -> list[str]:
        """Non-member identity names in label order."""
        self.nonmember_references()
        return list(self._names["nonmembers"])

    @property
    def overrepresented_identities(self) -> list[str]:
        """A folder marks none."""
        return []
