"""LightningDataModule for GAN training on faces: member identities, their held-out references, non-members.

The identity-membership question (Webster et al. 2021) is about *people*, not photos: a GAN
trains on some photos of member identities; the attacker holds *other* photos (references)
of members and of non-member identities and asks whose face the generator reproduces.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from privgan.data.identity_folders import eligible_identities, scan_identity_folders
from privgan.data.manifest import JsonManifest, SplitError
from privgan.data.people import people_in_manifest, people_of, refuse_overlap
from privgan.paths import lfw_root
from privgan.validation import check_choice, check_int

log = logging.getLogger(__name__)

GAN_MANIFEST_VERSION = 1
#: Split designs: equal member / non-member identities, or a few over-represented members among many.
DESIGNS = ("balanced", "overrepresented")


@dataclass(frozen=True)
class GanSplitManifest(JsonManifest):
    """Which photos train the GAN and which photos the attacker holds, per identity.

    Member identities (label order ``members``) give ``train`` photos (the GAN's data) and
    ``member_references`` it never sees; non-member identities give ``nonmember_references``
    (used for identity matching) and ``nonmember_others`` (as many as a regular member trains
    on: the non-member side of photo-level membership attacks). ``overrepresented`` names the
    members with many training photos in the ``overrepresented`` design (listed first).
    """

    KIND = "gan_identity_split"

    root: str
    seed: int
    design: str
    members: list[str]
    nonmembers: list[str]
    train: dict[str, list[str]]
    member_references: dict[str, list[str]]
    nonmember_references: dict[str, list[str]]
    nonmember_others: dict[str, list[str]] = field(default_factory=dict)
    overrepresented: list[str] = field(default_factory=list)
    excluded_people_of: list[str] = field(default_factory=list)  # manifests whose people this split avoids
    version: int = GAN_MANIFEST_VERSION

    def counts(self) -> dict[str, int]:
        """Numbers of identities and photos in each part."""
        return {
            "member_identities": len(self.members),
            "nonmember_identities": len(self.nonmembers),
            "overrepresented_identities": len(self.overrepresented),
            "train_images": sum(len(v) for v in self.train.values()),
            "member_reference_images": sum(len(v) for v in self.member_references.values()),
            "nonmember_reference_images": sum(len(v) for v in self.nonmember_references.values()),
            "nonmember_other_images": sum(len(v) for v in self.nonmember_others.values()),
        }


class GanFaceDataModule(L.LightningDataModule):
    """Aligned faces of member identities for GAN training, with the attacker's reference photos.

    ``design="balanced"``: ``n_member_identities`` members train on ``train_images`` photos each;
    ``n_nonmember_identities`` (default as many) non-members are drawn from the same pool (at
    least ``train_images + reference_images`` photos), so both sides look alike. ``design=
    "overrepresented"``: in addition, ``n_overrepresented`` members train on
    ``over_train_images`` photos each (drawn from identities with that many photos; they come
    first in the member labels, and ``n_member_identities`` counts the regular members only).
    Every identity keeps ``reference_images`` photos the GAN never sees. Faces are aligned once
    (cached) and resized to ``image_size`` (``privgan.faces.load_aligned``): ``align="auto"``
    aligns with MTCNN and takes photos that are already face crops whole, ``"mtcnn"`` only
    aligns, ``"none"`` takes every file as a crop; ``min_face_prob`` is MTCNN's threshold.

    Per identity, the first ``max_tries_per_identity`` of its photos in seeded order are tried
    (null: twice the photos it needs, ``train_images + reference_images``, or
    ``over_train_images + reference_images``; never fewer than it needs; an identity's other
    photos are not looked at). Bad files are skipped and counted in ``skipped``; an identity with
    too few usable faces among those tried is replaced by the next one in the seeded order
    (listed in ``dropped`` with the files tried). The split is saved as ``manifest.json`` in the
    trainer's ``default_root_dir``. ``exclude_people_of``: split manifests (a study's
    ``manifest.json``) whose people this data set must not contain: public pretraining data kept
    clear of the study (``privgan.data.people``).
    """

    def __init__(
        self,
        *,
        root: str | None = None,
        design: str = "balanced",
        n_member_identities: int = 64,
        n_nonmember_identities: int | None = None,
        train_images: int = 8,
        reference_images: int = 3,
        n_overrepresented: int = 4,
        over_train_images: int = 30,
        max_tries_per_identity: int | None = None,
        image_size: int = 32,
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
        if max_tries_per_identity is not None and (isinstance(max_tries_per_identity, bool) or max_tries_per_identity < 1):
            raise ValueError(
                f"max_tries_per_identity must be >= 1 (photos tried per identity) or null (twice the photos needed), "
                f"got {max_tries_per_identity!r}"
            )
        owner = type(self).__name__
        check_choice(owner, "design", design, DESIGNS)
        for name, v in (("n_member_identities", n_member_identities), ("train_images", train_images),
                        ("reference_images", reference_images), ("n_overrepresented", n_overrepresented),
                        ("over_train_images", over_train_images), ("batch_size", batch_size)):
            check_int(owner, name, v, minimum=1)
        check_int(owner, "n_nonmember_identities", n_nonmember_identities, minimum=1, allow_none=True)
        check_int(owner, "image_size", image_size, minimum=8)
        check_int(owner, "num_workers", num_workers, minimum=0)
        if design == "overrepresented" and (n_overrepresented < 1 or over_train_images <= train_images):
            raise ValueError(
                "design='overrepresented' needs n_overrepresented >= 1 and over_train_images > train_images, "
                f"got {n_overrepresented} and {over_train_images} (train_images={train_images})"
            )
        self.save_hyperparameters()
        self.root = root or str(lfw_root() / "images_deepfunneled")
        self.design = design
        self.manifest_: GanSplitManifest | None = None
        self.skipped: dict[str, list[str]] = {}
        self.dropped: dict[str, str] = {}
        self.n_tried = 0  # files tried (aligned or skipped) while drawing the split

    # -- split -------------------------------------------------------------------------------------
    def _make_split(self) -> tuple[GanSplitManifest, dict[str, torch.Tensor]]:
        """Walk identities in seeded order, aligning their photos, until every group is filled."""
        from privgan.faces.preprocess import load_aligned

        hp = self.hparams
        excluded = people_of(hp.exclude_people_of)
        folders = {n: f for n, f in scan_identity_folders(self.root).items() if n not in excluded}
        rng = random.Random(hp.seed)
        n_non = hp.n_nonmember_identities if hp.n_nonmember_identities is not None else hp.n_member_identities
        need = hp.train_images + hp.reference_images
        over = hp.design == "overrepresented"
        need_over = hp.over_train_images + hp.reference_images
        pool = eligible_identities(folders, need)
        over_pool = eligible_identities(folders, need_over) if over else []
        n_over = hp.n_overrepresented if over else 0
        if len(over_pool) < n_over or len(pool) < n_over + hp.n_member_identities + n_non:
            top = sorted((len(v) for v in folders.values()), reverse=True)[:8]
            msg = (
                f"need {hp.n_member_identities} member + {n_non} non-member identities with at least {need} images "
                f"(train_images {hp.train_images} + reference_images {hp.reference_images}), found {len(pool)}"
            )
            if over:
                msg += f"; and {n_over} over-represented identities with at least {need_over} images, found {len(over_pool)}"
            raise SplitError(
                f"{msg} in {self.root!r} ({len(folders)} identities in all; largest counts {top}). "
                "Lower the identity counts or the images per identity, or add images."
            )
        rng.shuffle(over_pool)
        rng.shuffle(pool)
        skipped: dict[str, list[str]] = {}
        crops: dict[str, torch.Tensor] = {}
        taken: set[str] = set()

        def fill(candidates: list[str], count: int, n_first: int, n_rest: int, role: str) -> list[tuple[str, list[str], list[str]]]:
            """Accept ``count`` identities with n_first + n_rest usable faces; returns (name, first, rest)."""
            out = []
            want = n_first + n_rest
            tries = max(hp.max_tries_per_identity or 2 * want, want)
            rule = (f"max_tries_per_identity={hp.max_tries_per_identity}" if hp.max_tries_per_identity
                    else f"max_tries_per_identity null: 2 x {want} needed")
            for name in candidates:
                if len(out) == count:
                    break
                if name in taken or name in self.dropped:
                    continue
                files = [str(f) for f in folders[name]]
                rng.shuffle(files)
                tried = files[:tries]
                res = load_aligned(tried, size=hp.image_size, align=hp.align, min_face_prob=hp.min_face_prob)
                self.n_tried += len(tried)
                for reason, paths in res.skipped.items():
                    skipped.setdefault(reason, []).extend(paths)
                usable = [str(p) for p in res.paths]
                if len(usable) < want:
                    self.dropped[name] = (
                        f"{role}: {len(usable)} usable faces in {len(tried)} files tried of {len(files)} "
                        f"({res.reasons()}), {want} needed"
                    )
                    continue
                for p, img in zip(usable[:want], res.images[:want]):
                    crops[p] = img
                taken.add(name)
                out.append((name, usable[:n_first], usable[n_first:want]))
            if len(out) < count:
                raise SplitError(
                    f"only {len(out)} of {count} {role} identities have {want} usable faces among up to {tries} files tried "
                    f"per identity ({rule}) in {self.root!r}, with align={hp.align!r}, min_face_prob={hp.min_face_prob:g}; "
                    f"{len(self.dropped)} dropped for bad files or no face: {dict(list(self.dropped.items())[:5])}. "
                    "Raise max_tries_per_identity, use align='auto' or 'none' for photos that are already face crops, "
                    "or lower the images per identity."
                )
            return out

        r = hp.reference_images
        over_rows = fill(over_pool, n_over, r, hp.over_train_images, "over-represented member")
        member_rows = fill(pool, hp.n_member_identities, r, hp.train_images, "member")
        non_rows = fill(pool, n_non, r, hp.train_images, "non-member")
        members = over_rows + member_rows
        manifest = GanSplitManifest(
            root=self.root,
            seed=hp.seed,
            design=hp.design,
            members=[m[0] for m in members],
            nonmembers=[m[0] for m in non_rows],
            train={m[0]: sorted(m[2]) for m in members},
            member_references={m[0]: sorted(m[1]) for m in members},
            nonmember_references={m[0]: sorted(m[1]) for m in non_rows},
            nonmember_others={m[0]: sorted(m[2]) for m in non_rows},
            overrepresented=[m[0] for m in over_rows],
            excluded_people_of=[str(m) for m in hp.exclude_people_of or []],
        )
        self.skipped = skipped
        return manifest, crops

    def _load_manifest(self, path: str) -> tuple[GanSplitManifest, dict[str, torch.Tensor]]:
        """Files of a saved manifest, aligned (cached); files that no longer align are skipped."""
        from privgan.faces.preprocess import load_aligned

        manifest = GanSplitManifest.load(path)
        refuse_overlap(people_in_manifest(path), people_of(self.hparams.exclude_people_of), public_source=f"manifest {path}",
                       study_source=", ".join(self.hparams.exclude_people_of or []))
        parts = (manifest.train, manifest.member_references, manifest.nonmember_references, manifest.nonmember_others)
        files = [f for part in parts for v in part.values() for f in v]
        hp = self.hparams
        res = load_aligned(files, size=hp.image_size, align=hp.align, min_face_prob=hp.min_face_prob)
        self.n_tried = len(files)
        self.skipped = {k: v for k, v in res.skipped.items() if v}
        self.root, self.design = manifest.root, manifest.design
        ok = {str(q) for q in res.paths}
        for what, part in (("member reference", manifest.member_references), ("non-member reference", manifest.nonmember_references),
                           ("training", manifest.train)):
            lost = sorted(n for n, fs in part.items() if fs and not any(f in ok for f in fs))
            if lost:
                log.warning("privgan GAN data: no usable %s photo of %d identities: %s", what, len(lost), ", ".join(lost))
        return manifest, {str(p): img for p, img in zip(res.paths, res.images)}

    # -- setup -------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Split (seeded, or from ``manifest``), align (cached) and load all faces into memory once."""
        if self.manifest_ is not None:
            return
        hp = self.hparams
        manifest, crops = self._load_manifest(hp.manifest) if hp.manifest else self._make_split()
        n_skipped = sum(len(v) for v in self.skipped.values())
        if n_skipped:
            reasons = ", ".join(f"{k}: {len(v)}" for k, v in sorted(self.skipped.items()) if v)
            share = n_skipped / self.n_tried if self.n_tried else 0.0
            log.warning("privgan GAN data: skipped %d of %d files tried (%.0f%% dropped; %s) with align=%r; %d identities dropped%s",
                        n_skipped, self.n_tried, 100 * share, reasons, hp.align, len(self.dropped),
                        f" ({', '.join(self.dropped)})" if self.dropped else "")

        def gather(part: dict[str, list[str]], names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            idx_files, lab = [], []
            for k, name in enumerate(names):
                for f in part.get(name, []):
                    if f in crops:
                        idx_files.append(crops[f])
                        lab.append(k)
            imgs = torch.stack(idx_files) if idx_files else torch.empty(0, 3, hp.image_size, hp.image_size)
            return imgs, torch.tensor(lab, dtype=torch.long)

        self._train = gather(manifest.train, manifest.members)
        self._member_refs = gather(manifest.member_references, manifest.members)
        self._nonmember_refs = gather(manifest.nonmember_references, manifest.nonmembers)
        self._nonmember_others = gather(manifest.nonmember_others, manifest.nonmembers)
        if len(self._train[1]) == 0 or len(self._member_refs[1]) == 0 or len(self._nonmember_refs[1]) == 0:
            raise ValueError(
                f"no usable training, member-reference or non-member-reference faces in {self.root!r}: "
                f"{len(self._train[1])}, {len(self._member_refs[1])}, {len(self._nonmember_refs[1])} after skipping {n_skipped} files"
            )
        self.manifest_ = manifest
        if self.trainer is not None and self.trainer.is_global_zero:
            manifest.save(Path(self.trainer.default_root_dir) / "manifest.json")

    def _require_setup(self) -> None:
        if self.manifest_ is None:
            raise RuntimeError("call setup() first (the Trainer does this)")

    # -- what attacks may use ------------------------------------------------------------------------
    @property
    def member_identities(self) -> list[str]:
        """Member identity names in label order."""
        self._require_setup()
        return list(self.manifest_.members)

    @property
    def nonmember_identities(self) -> list[str]:
        """Non-member identity names in label order."""
        self._require_setup()
        return list(self.manifest_.nonmembers)

    @property
    def overrepresented_identities(self) -> list[str]:
        """Members with many training photos (empty in the balanced design)."""
        self._require_setup()
        return list(self.manifest_.overrepresented)

    def train_images(self) -> torch.Tensor:
        """The GAN's training photos (members), N x 3 x S x S in [0, 1]."""
        self._require_setup()
        return self._train[0]

    def member_train_labels(self) -> torch.Tensor:
        """Member identity label of each training photo."""
        self._require_setup()
        return self._train[1]

    @property
    def train_identities(self) -> torch.Tensor:
        """The person each item of ``train_dataloader``'s dataset shows, in order (person-level DP-SGD samples by it)."""
        return self.member_train_labels()

    def member_train_counts(self) -> torch.Tensor:
        """Training photos per member identity (label order)."""
        self._require_setup()
        return torch.bincount(self._train[1], minlength=len(self.manifest_.members))

    def member_references(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out photos of member identities (never trained on) and their member labels."""
        self._require_setup()
        return self._member_refs

    def nonmember_references(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference photos of non-member identities and their non-member labels."""
        self._require_setup()
        return self._nonmember_refs

    def nonmember_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every photo of non-member identities (references first), with labels."""
        self._require_setup()
        return torch.cat([self._nonmember_refs[0], self._nonmember_others[0]]), torch.cat([self._nonmember_refs[1], self._nonmember_others[1]])

    def heldout_images(self) -> torch.Tensor:
        """Real faces the GAN never saw (member references and all non-member photos), for Fréchet distance."""
        self._require_setup()
        return torch.cat([self._member_refs[0], self.nonmember_images()[0]])

    # -- loaders -------------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """Shuffled ``(images,)`` batches of training photos (DP-SGD wiring makes them Poisson-sampled)."""
        self._require_setup()
        return DataLoader(
            TensorDataset(self._train[0]),
            batch_size=self.hparams.batch_size,
            shuffle=True,
            num_workers=self.hparams.num_workers,
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )
