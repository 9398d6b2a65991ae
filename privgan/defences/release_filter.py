"""Filter generated faces before release: block any sample a face recogniser matches to a training identity,
or that is a near copy of a training photo.

Two signals, each with its own threshold; a sample is blocked when either is above its own:

- *identity*: a face recogniser's similarity to the training people (below);
- *copy*: the sample's normalised cross-correlation with crops, tilts and mirror images of every
  training photo (``privgan.defences.copy_detector``). At the 32 px of the demo GAN the recogniser
  misses off-centre crops; the copy detector catches them, and it never sees identity, so it adds
  nothing for people the GAN draws anew.

The two thresholds share the block rate: ``joint_thresholds`` gives the copy detector half the
allowed false blocks and the recogniser the rest, on the same calibration faces, so the union still
blocks at most ``block_rate`` of innocent faces.

The identity score is a sample's best cosine similarity to any view of any training photo (the photo,
its mirror image, crops of it centred and shifted: ``GALLERY_VIEWS``; on 32 px LFW faces these
crops took copies cropped to 80-95 % at random offsets from 70 % to 94 % blocked at block rate 1e-3,
while grey and blurred views added nothing), taken over a few views of the sample
itself (``SAMPLE_VIEWS``, test-time augmentation). A sample is blocked when its score is above
the threshold.

The threshold is a per-*sample* rate, calibrated where the samples live: in the domain of the
training photos. Every training identity's photos are scored against the gallery of the *other*
training identities (leave one identity out): they are innocent faces of exactly that domain.
Faces of people outside the training set (outsiders) are scored against the whole gallery and
pooled with them. The threshold is the highest of the per-source thresholds (each source's
``floor(block_rate * n_eff)``-th highest score, ``n_eff`` its number of faces divided by the
design effect of photos of one person being alike), so neither the training-domain faces nor the
outsiders are blocked above ``block_rate``; the pool as a whole must hold at least
``1 / block_rate`` faces.

``calibrate`` also measures what it promises on faces it did not calibrate on: each training
identity in turn (or each of ``n_folds`` folds) is held out of the gallery and of the calibration,
and its photos are checked against the threshold set without it (the held-out false-block rate
with a Wilson interval, widened by the design effect of photos of one person being correlated). And it tests whether the outsiders look like the training photos (a
permutation test on one photo per person); a small p-value means calibration faces and
references differ in distribution and only the leave-one-identity-out part speaks for the domain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from privgan.data.image_ops import crop_back, grey3, rotate
from privgan.defences.copy_detector import CopyDetector, CopyViews
from privgan.faces.embedders import IdentityEmbedder, embed_batched
from privgan.metrics.intervals import wilson_interval


# -- views of a face ---------------------------------------------------------------------------------
def _crop(x: torch.Tensor, frac: float, dy: float = 0.0, dx: float = 0.0) -> torch.Tensor:
    """Crop of ``frac`` of the side, centred then shifted by (dy, dx) x side, resized back."""
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * frac)), max(1, round(w * frac))
    top = min(max(0, round((h - ch) / 2 + dy * h)), h - ch)
    left = min(max(0, round((w - cw) / 2 + dx * w)), w - cw)
    return crop_back(x, top, left, ch, cw).clamp(0, 1)


def _blur(x: torch.Tensor, s: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear", antialias=True,
                          align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


#: Deterministic views of a face (N x 3 x H x W in [0, 1] -> same shape), by name.
VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "original": lambda x: x,
    "flip": lambda x: x.flip(-1),
    "gray": grey3,
    "gray_flip": lambda x: grey3(x).flip(-1),
    "crop90": lambda x: _crop(x, 0.9),
    "crop90_flip": lambda x: _crop(x, 0.9).flip(-1),
    "crop85": lambda x: _crop(x, 0.85),
    "blur75": lambda x: _blur(x, 0.75),
    "blur75_flip": lambda x: _blur(x, 0.75).flip(-1),
    "crop80": lambda x: _crop(x, 0.8),
    # 85 % (90 %) crops shifted by 6 % (5 %) of the side up-left, up-right, down-left, down-right
    **{f"crop{round(100 * f)}_{n}": partial(_crop, frac=f, dy=sy * d, dx=sx * d)
       for f, d in ((0.85, 0.06), (0.9, 0.05)) for n, sy, sx in (("ul", -1, -1), ("ur", -1, 1), ("dl", 1, -1), ("dr", 1, 1))},
    "rot+8": lambda x: rotate(x, 8.0),
    "rot-8": lambda x: rotate(x, -8.0),
}
#: Views of every training photo in the gallery (``mirrored=False`` drops the mirrored ones).
GALLERY_VIEWS: tuple[str, ...] = ("original", "flip", "crop90", "crop85", "crop85_ul", "crop85_ur", "crop85_dl", "crop85_dr")
#: Views of every checked sample; its score is the best over them (test-time augmentation).
SAMPLE_VIEWS: tuple[str, ...] = ("original",)


def views(x: torch.Tensor, names: Sequence[str]) -> list[torch.Tensor]:
    """The named views of N x 3 x H x W faces, in order."""
    bad = [n for n in names if n not in VIEWS]
    if bad:
        raise ValueError(f"unknown view(s) {bad}; choose from {', '.join(VIEWS)}")
    return [VIEWS[n](x.float()) for n in names]


def block_threshold(scores: torch.Tensor, block_rate: float, groups: torch.Tensor | None = None) -> float:
    """The threshold that blocks (strictly above it) at most ``floor(block_rate * n_eff)`` of ``scores``.

    ``n_eff`` is the number of scores, or with ``groups`` (who each face shows) the effective number
    ``n / deff``: photos of one person are not independent faces (``score_design_effect``).
    """
    if not len(scores):
        return -math.inf
    n_eff = len(scores) / (score_design_effect(scores, groups) if groups is not None else 1.0)
    k = min(int(math.floor(block_rate * n_eff + 1e-9)), len(scores) - 1)
    return float(scores.sort(descending=True).values[k])


def joint_thresholds(identity: torch.Tensor, copy: torch.Tensor | None, block_rate: float,
                     groups: torch.Tensor | None = None) -> tuple[float, float]:
    """(identity, copy) thresholds that together block at most ``floor(block_rate * n_eff)`` of the faces.

    One of those false blocks is given up first: a threshold at the k-th highest of n scores blocks
    about (k + 1) / (n + 1) of new faces, so a second threshold costs one more. Of the rest the copy
    detector gets half (rounded down) and the recogniser what the copy threshold left: a face blocked
    by both counts once. Without copy scores: ``block_threshold`` and no copy threshold.
    """
    if copy is None:
        return block_threshold(identity, block_rate, groups), math.inf
    if not len(identity):
        return -math.inf, -math.inf
    deff = max(score_design_effect(identity, groups), score_design_effect(copy, groups)) if groups is not None else 1.0
    n = len(identity)
    k = min(max(0, int(math.floor(block_rate * n / deff + 1e-9)) - 1), n - 1)
    t_copy = float(copy.sort(descending=True).values[k // 2])
    free = copy <= t_copy
    rest = identity[free].sort(descending=True).values
    k_id = max(0, k - int((~free).sum()))
    return (float(rest[min(k_id, len(rest) - 1)]) if len(rest) else -math.inf), t_copy


def score_design_effect(values: torch.Tensor, groups: torch.Tensor) -> float:
    """Kish design effect ``1 + (m0 - 1) * ICC`` of ``values`` clustered in ``groups`` (one-way ANOVA ICC, in [0, 1])."""
    n = len(values)
    if n < 3:
        return 1.0
    _, inv = torch.unique(groups, return_inverse=True)
    g = int(inv.max()) + 1
    if g < 2 or n <= g:
        return 1.0
    v = values.double()
    m = torch.bincount(inv, minlength=g).double()
    mean_g = torch.zeros(g, dtype=torch.float64).index_add_(0, inv, v) / m
    msb = float((m * (mean_g - v.mean()) ** 2).sum()) / (g - 1)
    msw = float(((v - mean_g[inv]) ** 2).sum()) / (n - g)
    m0 = (n - float((m * m).sum()) / n) / (g - 1)
    den = msb + (m0 - 1) * msw
    icc = (msb - msw) / den if den > 0 else 0.0
    return 1 + (m0 - 1) * min(1.0, max(0.0, icc))


def _wilson(k: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for (possibly fractional, design-effect-scaled) counts."""
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0)) / d
    return max(0.0, c - h), min(1.0, c + h)


def design_effect(blocked: torch.Tensor, groups: torch.Tensor) -> float:
    """Kish design effect ``1 + (m0 - 1) * ICC`` of binary outcomes clustered in ``groups`` (photos of one person).

    ICC is the one-way ANOVA estimate (clipped to [0, 1]); 1 when there is one group, or none blocked, or all.
    """
    n = len(blocked)
    _, inv = torch.unique(groups, return_inverse=True)
    g = int(inv.max()) + 1 if n else 0
    k = float(blocked.float().sum())
    if g < 2 or n <= g or k in (0.0, float(n)):
        return 1.0
    m = torch.bincount(inv, minlength=g).double()
    pi = torch.zeros(g, dtype=torch.float64).index_add_(0, inv, blocked.double()) / m
    p = k / n
    msb = float((m * (pi - p) ** 2).sum()) / (g - 1)
    msw = float((m * pi * (1 - pi)).sum()) / (n - g)
    m0 = (n - float((m * m).sum()) / n) / (g - 1)
    icc = (msb - msw) / (msb + (m0 - 1) * msw) if msb + (m0 - 1) * msw > 0 else 0.0
    return 1 + (m0 - 1) * min(1.0, max(0.0, icc))


def rate_with_ci(blocked: torch.Tensor | int, n: int | None = None, *, groups: torch.Tensor | None = None) -> dict[str, float]:
    """Share blocked with a Wilson 95 % interval and counts (``blocked`` a bool tensor, or a count with ``n``).

    With ``groups`` (who each face shows), photos of one person count as correlated: the interval is
    Wilson's on the effective counts ``k / deff`` of ``n / deff`` (Kish's design effect, ``design_effect``).
    """
    if isinstance(blocked, torch.Tensor):
        k, n = int(blocked.sum()), len(blocked)
    else:
        k = int(blocked)
    deff = design_effect(blocked, torch.as_tensor(groups)) if isinstance(blocked, torch.Tensor) and groups is not None else 1.0
    if not n:
        lo, hi = math.nan, math.nan
    elif deff == 1.0:
        lo, hi = wilson_interval(k, n)
    else:
        lo, hi = _wilson(k / deff, n / deff)
    out = {"blocked": float(k), "n": float(n), "blocked_rate": k / n if n else math.nan, "ci_low": lo, "ci_high": hi}
    if groups is not None:
        out["design_effect"] = deff
    return out


def within_interval(rate: dict[str, float], block_rate: float) -> bool:
    """The false-block rate is not significantly above ``block_rate`` (its Wilson interval reaches down to it)."""
    return not rate["n"] or rate["ci_low"] <= block_rate


def identity_mean_shift_test(a: torch.Tensor, a_labels: torch.Tensor, b: torch.Tensor, b_labels: torch.Tensor, *,
                             n_permutations: int = 999, seed: int = 0) -> dict[str, float]:
    """Two-sample permutation test: do embeddings ``a`` and ``b`` come from one distribution (one domain)?

    Photos of one person are not independent, and the two sides hold different numbers of photos
    per person, so the units are people: one photo drawn (seeded) per identity of each side. The
    statistic is the squared distance between the two sides' mean unit embeddings; its p-value is
    ``(1 + #{permuted >= observed}) / (1 + n_permutations)`` over random reassignments of the
    units to the sides (exact under the null: photos of different people from one domain are exchangeable).
    """
    g = torch.Generator().manual_seed(seed)

    def units(e: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _, inv = torch.unique(y, return_inverse=True)
        order = torch.randperm(len(inv), generator=g)  # a random photo of each identity: the first in a random order
        first = torch.full((int(inv.max()) + 1,), len(inv), dtype=torch.long).scatter_reduce(
            0, inv[order], torch.arange(len(inv)), "amin")
        return e.float()[order[first]]

    ua, ub = units(a, a_labels), units(b, b_labels)
    pooled = torch.cat([ua, ub])
    na = len(ua)
    obs = float((ua.mean(0) - ub.mean(0)).pow(2).sum())
    perms = torch.stack([torch.randperm(len(pooled), generator=g) for _ in range(n_permutations)])
    x = pooled[perms]  # P x U x D
    stats = (x[:, :na].mean(1) - x[:, na:].mean(1)).pow(2).sum(1)
    p = (1 + int((stats >= obs * (1 - 1e-9)).sum())) / (1 + n_permutations)
    return {"statistic": obs, "p_value": p, "n_reference_identities": na, "n_calibration_identities": len(ub),
            "n_permutations": n_permutations}


class CalibrationError(ValueError):
    """Too few faces to calibrate at the requested block rate (the message gives the numbers and the fix)."""


@dataclass(frozen=True)
class Calibration:
    """How the threshold was set and how it held on faces it was not set on."""

    block_rate: float
    threshold: float
    n_domain: int  # training photos scored leave-one-identity-out
    n_outsiders: int
    thresholds: dict[str, float]  # per source ("training_domain", "outsiders", "pooled")
    heldout_domain: dict[str, float]  # cross-validated false-block rate on held-out training identities
    n_folds: int
    heldout_blocked: tuple[dict[str, object], ...] = ()  # the held-out training photos that were blocked, and by whom
    shift: dict[str, float] | None = None  # identity_mean_shift_test of references vs outsiders
    shift_alpha: float = 0.01
    gallery_views: tuple[str, ...] = ()
    sample_views: tuple[str, ...] = ()
    copy_threshold: float = math.inf  # copy detector's threshold (inf: no copy detector)
    copy_thresholds: dict[str, float] = field(default_factory=dict)  # per source, like ``thresholds``
    copy_views: CopyViews | None = None
    copy_note: str = ""  # why the copy detector is off, when it was asked for

    @property
    def shift_warning(self) -> bool:
        """The outsiders and the training photos differ in distribution (p below ``shift_alpha``)."""
        return bool(self.shift) and self.shift["p_value"] < self.shift_alpha

    def summary(self) -> dict[str, object]:
        return {
            "block_rate": self.block_rate, "threshold": self.threshold, "n_faces": self.n_domain + self.n_outsiders,
            "n_training_domain_faces": self.n_domain, "n_outsider_faces": self.n_outsiders, "thresholds": self.thresholds,
            "heldout_training_domain": dict(self.heldout_domain, n_folds=self.n_folds,
                                            within_interval=within_interval(self.heldout_domain, self.block_rate),
                                            blocked_photos=list(self.heldout_blocked)),
            "distribution_shift": None if self.shift is None else dict(self.shift, alpha=self.shift_alpha,
                                                                        warning=self.shift_warning),
            "gallery_views": list(self.gallery_views), "sample_views": list(self.sample_views),
            "copy_detector": ({"off": self.copy_note} if self.copy_note else None) if self.copy_views is None else {
                "threshold": self.copy_threshold, "thresholds": self.copy_thresholds,
                "views_per_photo": self.copy_views.count(), "min_crop": self.copy_views.min_crop, "grid": self.copy_views.grid,
                "rotations": list(self.copy_views.rotations), "mirrored": self.copy_views.mirrored,
                "resolution": self.copy_views.resolution},
        }


@dataclass(frozen=True)
class Verdicts:
    """Per sample: blocked or not, its best similarity to a training photo, and which photo / identity that was.

    ``similarity`` / ``photo`` / ``identity`` are the face recogniser's; ``copy_*`` the copy detector's
    (``privgan.defences.copy_detector``; None without one). A sample is blocked when either is above its threshold.
    """

    blocked: torch.Tensor
    similarity: torch.Tensor
    photo: torch.Tensor
    identity: torch.Tensor
    names: tuple[str, ...]
    threshold: float
    embeddings: torch.Tensor  # the samples' embeddings (first sample view), for galleries without embedding again
    copy_similarity: torch.Tensor | None = None
    copy_photo: torch.Tensor | None = None
    copy_identity: torch.Tensor | None = None
    copy_threshold: float = math.inf

    def __len__(self) -> int:
        return len(self.blocked)

    @property
    def by_identity(self) -> torch.Tensor:
        """Blocked because the face recogniser matched a training identity."""
        return self.similarity > self.threshold

    @property
    def by_copy(self) -> torch.Tensor:
        """Blocked because the sample correlates with a view of a training photo (a near copy)."""
        return self.copy_similarity > self.copy_threshold if self.copy_similarity is not None else torch.zeros_like(self.blocked)

    @property
    def matched_identity(self) -> torch.Tensor:
        """The identity each sample was blocked as (the recogniser's unless only the copy detector blocked it)."""
        if self.copy_identity is None:
            return self.identity
        return torch.where(self.by_copy & ~self.by_identity, self.copy_identity, self.identity)

    def rate(self) -> dict[str, float]:
        """Share blocked with a Wilson 95% interval, and counts."""
        return rate_with_ci(self.blocked)

    def rows(self, offset: int = 0) -> list[dict[str, object]]:
        """One dict per sample for CSV / JSON."""
        rows = [
            {"sample": offset + i, "blocked": int(b), "similarity": round(float(s), 4), "identity": self.names[int(c)],
             "training_photo": int(p)}
            for i, (b, s, c, p) in enumerate(zip(self.blocked.tolist(), self.similarity, self.identity, self.photo))
        ]
        if self.copy_similarity is not None:
            by_id, by_copy = self.by_identity.tolist(), self.by_copy.tolist()
            for r, cs, ci, cp, bi, bc in zip(rows, self.copy_similarity, self.copy_identity, self.copy_photo, by_id, by_copy):
                r.update(copy_similarity=round(float(cs), 4), copy_identity=self.names[int(ci)], copy_training_photo=int(cp),
                         blocked_by="+".join(k for k, on in (("identity", bi), ("copy", bc)) if on))
        return rows


@dataclass
class _Scored:
    """Per face: best similarity to each identity's gallery rows (N x I) and the gallery row that gave it."""

    per_identity: torch.Tensor
    row: torch.Tensor = field(repr=False)


class ReleaseFilter:
    """Blocks samples whose best cosine similarity to any view of any training photo exceeds ``threshold``.

    ``ReleaseFilter.calibrate(...)`` embeds the gallery and sets the threshold (module docstring);
    ``check(samples)`` gives verdicts and ``filter(samples)`` the samples that may be released
    (for serving-time filtering). ``calibration`` says how the threshold was set and held.
    """

    def __init__(self, embedder: IdentityEmbedder, train_embeddings: torch.Tensor, train_labels: torch.Tensor,
                 names: Sequence[str], *, threshold: float, block_rate: float | None = None, batch_size: int = 256,
                 n_photos: int | None = None, photo_index: torch.Tensor | None = None,
                 sample_views: Sequence[str] = SAMPLE_VIEWS, calibration: Calibration | None = None,
                 copy_detector: CopyDetector | None = None, copy_threshold: float = math.inf) -> None:
        if train_embeddings.ndim != 2 or len(train_embeddings) != len(train_labels) or len(train_embeddings) == 0:
            raise ValueError(f"need N x D training embeddings with N labels, got {tuple(train_embeddings.shape)} and {len(train_labels)}")
        if int(train_labels.max()) >= len(names):
            raise ValueError(f"labels go up to {int(train_labels.max())} but only {len(names)} identity names were given")
        self.embedder, self.gallery, self.labels = embedder, train_embeddings.float(), train_labels.long()
        self.names, self.threshold, self.block_rate, self.batch_size = tuple(names), float(threshold), block_rate, batch_size
        self.n_photos = n_photos or len(train_embeddings)
        # gallery row -> training photo; by default rows beyond n_photos are further views of photo i % n_photos
        self.photo_index = photo_index.long() if photo_index is not None else torch.arange(len(train_embeddings)) % self.n_photos
        self.sample_views = tuple(sample_views)
        self.calibration = calibration
        self.copy_detector, self.copy_threshold = copy_detector, float(copy_threshold)

    # -- scoring -------------------------------------------------------------------------------------
    def embed_views(self, faces: torch.Tensor, names: Sequence[str] | None = None) -> list[torch.Tensor]:
        """Embeddings of the named views (default: the sample views) of ``faces``."""
        return [embed_batched(self.embedder, v, batch_size=self.batch_size) for v in views(faces, names or self.sample_views)]

    def score_embeddings(self, view_embeddings: Sequence[torch.Tensor]) -> _Scored:
        """Best similarity of each face (over its views) to each identity's gallery rows."""
        n, n_id = len(view_embeddings[0]), len(self.names)
        sims = torch.stack([e.float() @ self.gallery.T for e in view_embeddings]).amax(0) if n else torch.empty(0, len(self.gallery))
        per_id = torch.full((n, n_id), -math.inf).scatter_reduce(1, self.labels.expand(n, -1), sims, "amax")
        row = sims.argmax(1) if n else torch.empty(0, dtype=torch.long)
        return _Scored(per_id, row)

    def verdicts_from(self, view_embeddings: Sequence[torch.Tensor], *, exclude: torch.Tensor | None = None,
                      copy: tuple[torch.Tensor, torch.Tensor] | None = None) -> Verdicts:
        """Verdicts from the sample views' embeddings and the copy detector's ``per_identity`` scores (if any);
        ``exclude`` (N x I bool) hides identities from a face's scores."""
        s = self.score_embeddings(view_embeddings)
        per_id = s.per_identity if exclude is None else s.per_identity.masked_fill(exclude, -math.inf)
        best, ident = per_id.max(1) if len(per_id) else (torch.empty(0), torch.empty(0, dtype=torch.long))
        if exclude is None:
            photo = self.photo_index[s.row]
        else:  # the best row of the chosen identity
            sims = torch.stack([e.float() @ self.gallery.T for e in view_embeddings]).amax(0)
            sims = sims.masked_fill(self.labels.unsqueeze(0) != ident.unsqueeze(1), -math.inf)
            photo = self.photo_index[sims.argmax(1)]
        blocked = best > self.threshold
        extra: dict[str, object] = {}
        if copy is not None and self.copy_detector is not None:
            c_id, c_photo = copy
            c_id = c_id if exclude is None else c_id.masked_fill(exclude, -math.inf)
            c_best, c_ident = c_id.max(1) if len(c_id) else (torch.empty(0), torch.empty(0, dtype=torch.long))
            blocked = blocked | (c_best > self.copy_threshold)
            extra = {"copy_similarity": c_best, "copy_identity": c_ident, "copy_threshold": self.copy_threshold,
                     "copy_photo": self.copy_detector.best_photo(c_photo, c_ident)}
        return Verdicts(blocked, best, photo, ident, self.names, self.threshold, view_embeddings[0], **extra)

    def check(self, samples: torch.Tensor) -> Verdicts:
        """Verdicts for N x 3 x H x W samples in [0, 1]."""
        if samples.ndim != 4 or samples.shape[1] != 3:
            raise ValueError(f"samples must be N x 3 x H x W, got {tuple(samples.shape)}")
        copy = self.copy_detector.per_identity(samples, len(self.names)) if self.copy_detector is not None else None
        return self.verdicts_from(self.embed_views(samples), copy=copy)

    def filter(self, samples: torch.Tensor) -> tuple[torch.Tensor, Verdicts]:
        """The samples that may be released, and the verdicts for all of them."""
        v = self.check(samples)
        return samples[~v.blocked], v

    # -- calibration ---------------------------------------------------------------------------------
    @classmethod
    def calibrate(cls, embedder: IdentityEmbedder, train_faces: torch.Tensor, train_labels: torch.Tensor, names: Sequence[str],
                  outsider_faces: torch.Tensor | None = None, *, block_rate: float = 1e-3, mirrored: bool = True,
                  batch_size: int = 256, outsider_labels: Sequence[str] | torch.Tensor | None = None,
                  gallery_views: Sequence[str] | None = None, sample_views: Sequence[str] | None = None,
                  n_folds: int = 0, seed: int = 0, shift_alpha: float = 0.01, n_permutations: int = 999,
                  copy_views: CopyViews | None = None, copy_detection: bool = True) -> "ReleaseFilter":
        """Embed the gallery (``gallery_views`` of every training photo; ``mirrored=False`` drops mirror views) and set
        the threshold in the training photos' own domain (leave-one-identity-out), pooled with ``outsider_faces``.

        ``outsider_labels`` (a name or id per outsider face) groups outsiders by person for the distribution
        test (default: every face its own person). ``n_folds``: the training identities are split into
        that many folds for the held-out false-block check; 0 (default): one fold per identity (leave one
        identity out; needs three or more identities). ``copy_detection`` (default on) adds the copy detector
        (``copy_views`` of every training photo); the two thresholds share the block rate (``joint_thresholds``).
        Raises :class:`CalibrationError` when the pool holds fewer than ``1 / block_rate`` faces.
        """
        if not 0 < block_rate < 1:
            raise ValueError(f"block_rate must be in (0, 1), got {block_rate}")
        train_labels = torch.as_tensor(train_labels).long()
        gv = tuple(gallery_views or GALLERY_VIEWS)
        if not mirrored:
            gv = tuple(v for v in gv if "flip" not in v)
        sv = tuple(sample_views or SAMPLE_VIEWS)
        outsider_faces = outsider_faces if outsider_faces is not None else torch.empty(0, *train_faces.shape[1:])
        n_dom_possible = len(train_faces) if len(torch.unique(train_labels)) > 1 else 0
        need = math.ceil(1 / block_rate)
        if n_dom_possible + len(outsider_faces) < need:
            raise CalibrationError(
                f"calibrating at block rate {block_rate:g} needs at least {need} faces (a share {block_rate:g} of them is "
                f"{block_rate * need:g} face); got {n_dom_possible + len(outsider_faces)}: {n_dom_possible} training photos "
                f"scored leave-one-identity-out and {len(outsider_faces)} faces of people outside the training set. Fix: give "
                f"more faces of people outside the training set (in the domain of the training photos if you can), or "
                f"raise the block rate to at least {1 / max(1, n_dom_possible + len(outsider_faces)):.2g}.")
        # embed every view needed once
        emb: dict[str, torch.Tensor] = {}
        for name, v in zip(dict.fromkeys(gv + sv), views(train_faces, list(dict.fromkeys(gv + sv)))):
            emb[name] = embed_batched(embedder, v, batch_size=batch_size)
        gallery = torch.cat([emb[v] for v in gv])
        n = len(train_faces)
        labels = train_labels.repeat(len(gv))
        n_id = len(names)
        allowed = math.floor(block_rate * (n_dom_possible + len(outsider_faces)) + 1e-9)
        copy_note = ""
        if copy_detection and allowed < 2:
            copy_note = (f"copy detector off: {n_dom_possible + len(outsider_faces)} calibration faces allow {allowed} false "
                         f"block at block rate {block_rate:g}, and a second threshold costs one (give at least "
                         f"{math.ceil(2 / block_rate)} faces to have it)")
            copy_detection = False
        copy_det = CopyDetector(train_faces, train_labels, views=copy_views) if copy_detection else None
        filt = cls(embedder, gallery, labels, names, threshold=math.inf, block_rate=block_rate, batch_size=batch_size,
                   n_photos=n, photo_index=torch.arange(n).repeat(len(gv)), sample_views=sv, copy_detector=copy_det)
        dom = filt.score_embeddings([emb[v] for v in sv]).per_identity  # n x I
        out_emb = filt.embed_views(outsider_faces) if len(outsider_faces) else [torch.empty(0, gallery.shape[1])] * len(sv)
        out = filt.score_embeddings(out_emb).per_identity if len(outsider_faces) else torch.empty(0, n_id)
        dom_c = copy_det.per_identity(train_faces, n_id)[0] if copy_det else None
        out_c = copy_det.per_identity(outsider_faces, n_id)[0] if copy_det and len(outsider_faces) else torch.empty(0, n_id)
        own = F.one_hot(train_labels, n_id).bool()
        ol = outsider_labels if outsider_labels is not None else list(range(len(outsider_faces)))
        if not isinstance(ol, torch.Tensor):
            ids_of: dict[object, int] = {}
            ol = torch.tensor([ids_of.setdefault(x, len(ids_of)) for x in ol], dtype=torch.long)
        out_groups = torch.unique(ol.long(), return_inverse=True)[1] if len(ol) else torch.empty(0, dtype=torch.long)

        def best(mat: torch.Tensor, rows: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
            """Each training photo's best score against the identities ``keep`` other than its own."""
            return mat[rows].masked_fill(own[rows] | ~keep, -math.inf).amax(1) if rows.any() else torch.empty(0)

        def thresholds(keep: torch.Tensor, dom_rows: torch.Tensor) -> tuple[dict[str, float], dict[str, float]]:
            """Per-source and final (identity, copy) thresholds with the gallery reduced to identities ``keep`` (bool I)."""
            d = best(dom, dom_rows, keep)
            dg = train_labels[dom_rows] if dom_rows.any() else torch.empty(0, dtype=torch.long)
            dc = best(dom_c, dom_rows, keep)[torch.isfinite(d)] if dom_c is not None else None
            dg, d = dg[torch.isfinite(d)], d[torch.isfinite(d)]
            o = out[:, keep].amax(1) if len(out) else torch.empty(0)
            oc = (out_c[:, keep].amax(1) if len(out_c) else torch.empty(0)) if dom_c is not None else None
            sources = {"training_domain": (d, dc, dg), "outsiders": (o, oc, out_groups),
                       "pooled": (torch.cat([d, o]), None if dc is None else torch.cat([dc, oc]), torch.cat([dg, out_groups + n_id]))}
            t, tc = {}, {}
            for k, (i, c, g) in sources.items():
                t[k], tc[k] = joint_thresholds(i, c, block_rate, g)
            t["final"], tc["final"] = max(t.values()), max(tc.values())
            return t, tc

        present = torch.zeros(n_id, dtype=torch.bool)
        present[torch.unique(train_labels)] = True
        t_all, tc_all = thresholds(present, torch.ones(n, dtype=torch.bool))
        # held-out training identities: k folds, each out of the gallery and the calibration
        ids = torch.unique(train_labels)
        k = (len(ids) if n_folds <= 0 else max(2, min(n_folds, len(ids)))) if len(ids) > 2 else 0
        held_blocked, held_groups, wrongly = [], [], []
        if k:
            perm = ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))]
            for f in range(k):
                held = perm[f::k]
                keep = present.clone()
                keep[held] = False
                rows_held = torch.isin(train_labels, held)
                tt, ttc = thresholds(keep, ~rows_held)
                t, tc = tt["final"], ttc["final"]
                s, match = dom[rows_held].masked_fill(~keep, -math.inf).max(1)
                sc, match_c = (dom_c[rows_held].masked_fill(~keep, -math.inf).max(1) if dom_c is not None
                               else (torch.full_like(s, -math.inf), match))
                by_c = (sc > tc) & ~(s > t)
                held_blocked.append((s > t) | (sc > tc))
                held_groups.append(train_labels[rows_held])
                for i in held_blocked[-1].nonzero().squeeze(1).tolist():
                    c = bool(by_c[i])
                    wrongly.append({"photo": int(rows_held.nonzero()[i]), "identity": names[int(train_labels[rows_held][i])],
                                    "matched": names[int((match_c if c else match)[i])], "by": "copy" if c else "identity",
                                    "similarity": round(float((sc if c else s)[i]), 4), "threshold": round(tc if c else t, 4)})
        heldout = rate_with_ci(torch.cat(held_blocked) if held_blocked else torch.zeros(0, dtype=torch.bool),
                               groups=torch.cat(held_groups) if held_groups else torch.zeros(0, dtype=torch.long))
        shift = None
        if len(outsider_faces) and n_dom_possible:
            shift = identity_mean_shift_test(emb[sv[0]], train_labels, out_emb[0], out_groups, n_permutations=n_permutations,
                                             seed=seed)
        filt.threshold, filt.copy_threshold = t_all["final"], tc_all["final"]
        filt.calibration = Calibration(block_rate, t_all["final"], n_dom_possible, len(outsider_faces), t_all, heldout, k,
                                       tuple(wrongly), shift, shift_alpha, gv, sv, copy_threshold=tc_all["final"],
                                       copy_thresholds=tc_all if copy_det else {},
                                       copy_views=copy_det.views if copy_det else None, copy_note=copy_note)
        return filt
