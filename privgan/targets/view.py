"""The attacker's view: a frozen record of the photos and labels its threat model gives it.

Four parts, one meaning each:

- ``members``: the photos the model trained on (used only as evaluation labels, never as input
  an attacker could not have);
- ``heldout``: other photos of the member identities, never trained on;
- ``nonmembers``: photos of identities the model never saw (``nonmember_references`` is the
  subset used as identity-match references, matched in number to ``heldout``);
- ``auxiliary``: the attacker's own faces of further identities, for learned attacks and
  threshold calibration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

import torch

PARTS = ("members", "heldout", "nonmembers", "nonmember_references", "auxiliary")


@dataclass(frozen=True)
class Photos:
    """Images (N x 3 x H x W float in [0, 1]) with identity labels indexing ``names``."""

    images: torch.Tensor
    labels: torch.Tensor
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or len(self.images) != len(self.labels):
            raise ValueError(f"photos must be N x C x H x W with N labels, got {tuple(self.images.shape)} and {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def name(self, label: int) -> str:
        """The identity name of ``label`` (``id<label>`` when the source has no names)."""
        return self.names[label] if label < len(self.names) else f"id{label}"

    def resized(self, size: int) -> Photos:
        """The same photos at ``size`` x ``size`` (``privgan.faces.resize_faces``; unchanged when equal)."""
        from privgan.faces.resize import resize_faces

        return replace(self, images=resize_faces(self.images, size))

    def subset(self, index: torch.Tensor) -> Photos:
        """The photos at ``index`` (labels and names kept)."""
        return replace(self, images=self.images[index], labels=self.labels[index])


@dataclass(frozen=True)
class AttackerView:
    """What the threat model gives the attacker; parts it does not give are None.

    ``overrepresented`` names members with many training photos (the overrepresented design);
    ``source`` says where the photos came from. Embeddings of a part are computed once per
    embedder and kept (``embeddings``).
    """

    members: Photos | None = None
    heldout: Photos | None = None
    nonmembers: Photos | None = None
    nonmember_references: Photos | None = None
    auxiliary: Photos | None = None
    overrepresented: tuple[str, ...] = ()
    source: str = ""
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    def require(self, needs: Iterable[str], *, who: str) -> None:
        """Raise naming the parts ``who`` needs that this view lacks."""
        missing = [n for n in needs if getattr(self, n) is None or len(getattr(self, n)) == 0]
        if missing:
            raise ValueError(
                f"{who} needs {', '.join(missing)} photos, which the attacker's view ({self.source or 'unnamed'}) lacks: "
                "use a privgan DataModule that provides them, or a references folder with "
                + ", ".join(f"{'nonmembers' if m == 'nonmember_references' else m}/" for m in missing)
            )

    def references_for_identity_match(self) -> Photos:
        """Non-member photos used as the identity-match null population."""
        return self.nonmember_references if self.nonmember_references is not None else self.nonmembers

    def unseen(self) -> torch.Tensor:
        """Real faces the model never saw (held-out and non-member photos), e.g. for Fréchet distance."""
        parts = [p.images for p in (self.heldout, self.nonmembers) if p is not None and len(p)]
        if not parts:
            raise ValueError("no held-out or non-member photos in the attacker's view")
        from privgan.faces.resize import resize_faces

        return torch.cat([resize_faces(p, parts[0].shape[-1]) for p in parts])

    def embeddings(self, part: str, embedder: Any) -> torch.Tensor:
        """Identity embeddings of a part, computed once per embedder name."""
        key = (part, getattr(embedder, "name", type(embedder).__name__))
        if key not in self._memo:
            from privgan.faces.embedders import embed_batched

            if part == "unseen":  # held-out and non-member photos, each embedded once
                self._memo[key] = torch.cat([self.embeddings(p, embedder) for p in ("heldout", "nonmembers")
                                             if getattr(self, p) is not None and len(getattr(self, p))])
            else:
                self._memo[key] = embed_batched(embedder, getattr(self, part).images)
        return self._memo[key]


def _photos(pair: Any, names: Any = ()) -> Photos:
    images, labels = (pair.images, pair.labels) if hasattr(pair, "images") else pair
    return Photos(images.float(), labels.long(), tuple(names or ()))


def _names(source: Any, *attrs: str) -> tuple[str, ...]:
    for a in attrs:
        try:
            v = getattr(source, a, None)
        except (RuntimeError, FileNotFoundError, ValueError):
            v = None
        if v:
            return tuple(v)
    return ()


def view_from(source: Any, *, needs: Iterable[str] = PARTS, image_size: int | None = None) -> AttackerView:
    """The attacker's view of a privgan DataModule, a ``ReferenceFolder`` or a folder path.

    Only the parts in ``needs`` are read (a folder aligns faces on first read). A path becomes a
    :class:`privgan.data.ReferenceFolder` at ``image_size`` (64 when not given).
    """
    if isinstance(source, AttackerView):
        return source
    if isinstance(source, (str, os.PathLike)):
        from privgan.data.reference_folder import ReferenceFolder

        source = ReferenceFolder(source, image_size=image_size or 64)
    if source is None:
        raise ValueError("no data for the attacker's view: give references= (a folder) or use a privgan DataModule")
    needs = set(needs)
    parts: dict[str, Photos] = {}
    member_names = _names(source, "member_identities", "identity_names")
    gan_style = hasattr(source, "train_images") and hasattr(source, "member_references")
    if gan_style:
        nonmember_names = _names(source, "nonmember_identities")
        getters = {
            "members": lambda: _photos((source.train_images(), source.member_train_labels()), member_names),
            "heldout": lambda: _photos(source.member_references(), member_names),
            "nonmembers": lambda: _photos(source.nonmember_images(), nonmember_names),
            "nonmember_references": lambda: _photos(source.nonmember_references(), nonmember_names),
        }
    elif hasattr(source, "members"):
        getters = {
            "members": lambda: _photos(source.members(), member_names),
            "heldout": lambda: _photos(source.nonmembers(), member_names),  # split-style sources call them nonmembers()
        }
    else:
        raise TypeError(f"{type(source).__name__} offers no photos to attack with (members(), train_images(), ...): "
                        "use a privgan DataModule or privgan.data.ReferenceFolder")
    if hasattr(source, "auxiliary"):
        getters["auxiliary"] = lambda: _photos(
            (source.auxiliary(), source.auxiliary_labels() if hasattr(source, "auxiliary_labels") else torch.arange(len(source.auxiliary())))
        )
    missing = []
    for part in sorted(needs & set(getters)):
        try:
            parts[part] = getters[part]()
        except FileNotFoundError as e:
            missing.append(str(e))
    if missing and not parts:
        raise FileNotFoundError("; ".join(missing))
    if image_size is not None:
        parts = {k: v.resized(image_size) for k, v in parts.items()}
    over = _names(source, "overrepresented_identities")
    return AttackerView(**parts, overrepresented=over, source=str(getattr(source, "root", type(source).__name__)))
