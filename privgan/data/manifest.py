"""Seeded identity splits written to a manifest: members, held-out non-members, auxiliary identities."""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from privgan.atomic import atomic_write_text
from privgan.data.identity_folders import eligible_identities

MANIFEST_VERSION = 1


class SplitError(ValueError):
    """The data cannot be split as asked (too few identities or images); the message gives counts."""


class JsonManifest:
    """``save`` / ``load`` for manifest dataclasses: one JSON file, tagged with ``KIND``; errors name the file."""

    KIND = "identity_split"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the manifest as JSON (the record of who was a member), atomically.

        The text goes to a temp file beside ``path``, is flushed to disk and then renamed, so a
        full disk or a crash mid-write leaves the previous manifest (or none), never a cut one.
        """
        return atomic_write_text(path, json.dumps({"kind": self.KIND, **asdict(self)}, indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Read a manifest written by ``save``."""
        p = Path(path)
        try:
            raw = json.loads(p.read_text())
            kind = raw.pop("kind", cls.KIND)
            if kind != cls.KIND:
                raise TypeError(f"it is a {kind!r} manifest, not {cls.KIND!r}")
            return cls(**raw)
        except (OSError, json.JSONDecodeError, TypeError) as e:
            raise ValueError(f"cannot read {cls.KIND} manifest {str(p)!r}: {e}") from e


@dataclass(frozen=True)
class SplitManifest(JsonManifest):
    """Which files are members (train), non-members (held-out) and auxiliary (attacker's own data).

    Classifier identities are labelled 0..K-1 in ``identities`` order. Auxiliary identities
    are disjoint from them: learned attacks (inversion decoders) train on them only.
    """

    root: str
    seed: int
    identities: list[str]
    train: dict[str, list[str]]
    heldout: dict[str, list[str]]
    auxiliary: dict[str, list[str]] = field(default_factory=dict)
    excluded_people_of: list[str] = field(default_factory=list)  # manifests whose people this split avoids
    version: int = MANIFEST_VERSION

    def counts(self) -> dict[str, int]:
        """Numbers of identities and images in each part."""
        return {
            "identities": len(self.identities),
            "train_images": sum(len(v) for v in self.train.values()),
            "heldout_images": sum(len(v) for v in self.heldout.values()),
            "auxiliary_identities": len(self.auxiliary),
            "auxiliary_images": sum(len(v) for v in self.auxiliary.values()),
        }


def make_split(
    folders: dict[str, list[Path]],
    *,
    root: str,
    n_identities: int,
    min_images: int,
    max_images: int | None = None,
    train_fraction: float = 0.5,
    aux_identities: int = 0,
    aux_min_images: int = 1,
    aux_max_images: int = 4,
    seed: int = 0,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> SplitManifest:
    """Draw classifier identities with >= ``min_images`` files and split each one's images.

    ``folders`` maps identity to files (only files that survived alignment should be passed).
    ``exclude``: people never drawn, in any part (public data kept clear of a study's people).
    """
    folders = {n: f for n, f in folders.items() if n not in exclude}
    if not 0 < train_fraction < 1:
        raise SplitError(f"train_fraction must be in (0, 1), got {train_fraction}")
    rng = random.Random(seed)
    eligible = eligible_identities(folders, min_images)
    if len(eligible) < n_identities:
        top = sorted((len(v) for v in folders.values()), reverse=True)[: max(n_identities, 5)]
        raise SplitError(
            f"need {n_identities} identities with at least {min_images} usable images, found "
            f"{len(eligible)} in {root!r} ({len(folders)} identities in all{f', after excluding {len(exclude)} people' if exclude else ''}; "
            f"largest counts {top}). "
            "Lower n_identities or min_images, or add images."
        )
    chosen = sorted(rng.sample(eligible, n_identities))
    train: dict[str, list[str]] = {}
    heldout: dict[str, list[str]] = {}
    for name in chosen:
        files = [str(f) for f in folders[name]]
        rng.shuffle(files)
        if max_images:
            files = files[:max_images]
        k = max(1, min(len(files) - 1, round(len(files) * train_fraction)))
        train[name], heldout[name] = sorted(files[:k]), sorted(files[k:])
    aux: dict[str, list[str]] = {}
    if aux_identities:
        pool = [n for n in folders if n not in train and len(folders[n]) >= aux_min_images]
        if len(pool) < aux_identities:
            raise SplitError(
                f"need {aux_identities} auxiliary identities (disjoint from the {n_identities} "
                f"classifier identities) with at least {aux_min_images} images, found {len(pool)}"
            )
        for name in sorted(rng.sample(pool, aux_identities)):
            files = [str(f) for f in folders[name]]
            rng.shuffle(files)
            aux[name] = sorted(files[:aux_max_images])
    return SplitManifest(root=root, seed=seed, identities=chosen, train=train, heldout=heldout, auxiliary=aux)
