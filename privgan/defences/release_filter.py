"""Filter generated faces before release: block any sample a face recogniser matches to a training identity.

The threshold is calibrated on faces of people outside the training set, per *sample*: a
sample is compared with every training photo, so a per-pair verification threshold would
block far more innocent faces than its false-accept rate says. ``far`` here is the share of
outsiders' faces the filter blocks (empirically, on the calibration faces).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from privgan.faces.embedders import embed_batched
from privgan.metrics.intervals import wilson_interval
from privgan.faces.embedders import IdentityEmbedder


@dataclass(frozen=True)
class Verdicts:
    """Per sample: blocked or not, its best similarity to a training photo, and which photo / identity that was."""

    blocked: torch.Tensor
    similarity: torch.Tensor
    photo: torch.Tensor
    identity: torch.Tensor
    names: tuple[str, ...]
    threshold: float
    embeddings: torch.Tensor  # the samples' embeddings, for galleries without embedding again

    def __len__(self) -> int:
        return len(self.blocked)

    def rate(self) -> dict[str, float]:
        """Share blocked with a Wilson 95% interval, and counts."""
        k, n = int(self.blocked.sum()), len(self)
        lo, hi = wilson_interval(k, n) if n else (math.nan, math.nan)
        return {"blocked": float(k), "n": float(n), "blocked_rate": k / n if n else math.nan, "ci_low": lo, "ci_high": hi}

    def rows(self, offset: int = 0) -> list[dict[str, object]]:
        """One dict per sample for CSV / JSON."""
        return [
            {"sample": offset + i, "blocked": int(b), "similarity": round(float(s), 4), "identity": self.names[int(c)],
             "training_photo": int(p)}
            for i, (b, s, c, p) in enumerate(zip(self.blocked.tolist(), self.similarity, self.identity, self.photo))
        ]


class ReleaseFilter:
    """Blocks samples whose best cosine similarity to any training photo (or its mirror image) exceeds ``threshold``.

    ``ReleaseFilter.calibrate(...)`` sets the threshold so that a share ``block_rate`` of faces of
    people outside the training set would be blocked; ``check(samples)`` gives verdicts and
    ``filter(samples)`` the samples that may be released (for serving-time filtering).
    """

    def __init__(self, embedder: IdentityEmbedder, train_embeddings: torch.Tensor, train_labels: torch.Tensor,
                 names: Sequence[str], *, threshold: float, block_rate: float | None = None, batch_size: int = 256,
                 n_photos: int | None = None) -> None:
        if train_embeddings.ndim != 2 or len(train_embeddings) != len(train_labels) or len(train_embeddings) == 0:
            raise ValueError(f"need N x D training embeddings with N labels, got {tuple(train_embeddings.shape)} and {len(train_labels)}")
        if int(train_labels.max()) >= len(names):
            raise ValueError(f"labels go up to {int(train_labels.max())} but only {len(names)} identity names were given")
        self.embedder, self.gallery, self.labels = embedder, train_embeddings.float(), train_labels.long()
        self.names, self.threshold, self.block_rate, self.batch_size = tuple(names), float(threshold), block_rate, batch_size
        self.n_photos = n_photos or len(train_embeddings)  # gallery rows beyond this are mirror images of photo i % n_photos

    @classmethod
    def calibrate(cls, embedder: IdentityEmbedder, train_faces: torch.Tensor, train_labels: torch.Tensor, names: Sequence[str],
                  outsider_faces: torch.Tensor, *, block_rate: float = 1e-3, mirrored: bool = True, batch_size: int = 256) -> "ReleaseFilter":
        """Embed the training photos (and, with ``mirrored``, their mirror images: GANs train on flips); set the
        threshold that blocks a share ``block_rate`` of ``outsider_faces``."""
        if not 0 < block_rate < 1:
            raise ValueError(f"block_rate must be in (0, 1), got {block_rate}")
        need = math.ceil(1 / block_rate)
        if len(outsider_faces) < need:
            raise ValueError(f"calibrating at block rate {block_rate:g} needs at least {need} faces of people outside the training set; "
                             f"got {len(outsider_faces)}")
        gallery = embed_batched(embedder, train_faces, batch_size=batch_size)
        labels = train_labels
        if mirrored:
            gallery = torch.cat([gallery, embed_batched(embedder, train_faces.flip(-1), batch_size=batch_size)])
            labels = torch.cat([train_labels, train_labels])
        best = (embed_batched(embedder, outsider_faces, batch_size=batch_size) @ gallery.T).max(1).values
        k = int(math.floor(block_rate * len(best)))  # block strictly above the (k+1)-th highest: at most k outsiders
        threshold = float(best.sort(descending=True).values[k])
        return cls(embedder, gallery, labels, names, threshold=threshold, block_rate=block_rate, batch_size=batch_size,
                   n_photos=len(train_faces))

    def check(self, samples: torch.Tensor) -> Verdicts:
        """Verdicts for N x 3 x H x W samples in [0, 1]."""
        if samples.ndim != 4 or samples.shape[1] != 3:
            raise ValueError(f"samples must be N x 3 x H x W, got {tuple(samples.shape)}")
        emb = embed_batched(self.embedder, samples, batch_size=self.batch_size)
        sims = emb @ self.gallery.T
        best, row = sims.max(1) if len(emb) else (torch.empty(0), torch.empty(0, dtype=torch.long))
        return Verdicts(best > self.threshold, best, row % self.n_photos, self.labels[row], self.names, self.threshold, emb)

    def filter(self, samples: torch.Tensor) -> tuple[torch.Tensor, Verdicts]:
        """The samples that may be released, and the verdicts for all of them."""
        v = self.check(samples)
        return samples[~v.blocked], v
