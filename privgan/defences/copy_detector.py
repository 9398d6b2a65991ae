"""Near-copy detection for the release gate: a sample's correlation with crops, mirror images and tilts of training photos.

A face recogniser matches *people*. On the small faces GANs draw it misses training photos that were
cropped off-centre (SFace at 32 px, best gallery of aligned crops: 94 % of random-offset 80-95 %
crops blocked at block rate 1e-3 on LFW, 65 % on tight grey harshly lit faces). A copy is caught
in pixel space instead. Every training photo is cut into every crop of at least ``min_crop`` of its
side on a grid of ``1 / grid`` of the side, each resized back, plus small rotations and, with
``mirrored``, the mirror image of each. Every view and every sample is reduced to grey levels at
``resolution`` px, centred and scaled to unit length, so their dot product is a normalised
cross-correlation: blind to brightness and contrast, robust to JPEG, resizing and grey levels.
A sample's copy score for a photo is its best correlation with any view of that photo.

Memory: ``n_views x n_photos x resolution**2`` floats (292 views at the defaults: 1,000 photos take
0.3 GB); above ``max_cache_bytes`` the views are recomputed on every call instead of being kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from privgan.data.image_ops import crop_back, luma, rotate


@dataclass(frozen=True)
class CopyViews:
    """Which views of each training photo a sample is compared with."""

    min_crop: float = 0.8  # smallest crop, as a share of the side
    grid: int = 32  # crop sizes and offsets step by 1 / grid of the side
    rotations: tuple[float, ...] = (-9.0, -6.0, -3.0, 3.0, 6.0, 9.0)  # degrees, about the centre
    rotated_crop_grid: int = 0  # > 0: each rotation's crops too, on this coarser grid (0: rotations of the whole photo only)
    mirrored: bool = True
    resolution: int = 16  # side of the grey image that is correlated

    def __post_init__(self) -> None:
        if not 0 < self.min_crop <= 1:
            raise ValueError(f"copy views: min_crop must be in (0, 1], got {self.min_crop}")
        if self.grid < 1 or self.resolution < 2:
            raise ValueError(f"copy views: grid must be >= 1 and resolution >= 2, got {self.grid} and {self.resolution}")

    def boxes(self, grid: int | None = None) -> list[tuple[float, float, float]]:
        """(side, top, left) of every crop on ``grid`` (default ``self.grid``) as shares of the side, the whole photo first."""
        grid = grid or self.grid
        out = [(1.0, 0.0, 0.0)]
        for c in range(math.ceil(self.min_crop * grid - 1e-9), grid):
            out += [(c / grid, t / grid, l / grid) for t in range(grid - c + 1) for l in range(grid - c + 1)]
        return out

    def rotated_boxes(self) -> list[tuple[float, float, float]]:
        """The crops taken of each rotated photo (the whole of it only, unless ``rotated_crop_grid``)."""
        return self.boxes(self.rotated_crop_grid) if self.rotated_crop_grid else [(1.0, 0.0, 0.0)]

    def count(self) -> int:
        """Views per photo."""
        return (len(self.boxes()) + len(self.rotations) * len(self.rotated_boxes())) * (2 if self.mirrored else 1)


def copy_features(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """N x 3 x H x W in [0, 1] -> N x resolution² grey images, centred, unit length (dot product = correlation)."""
    g = F.interpolate(luma(x).float(), size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    g = g.flatten(1)
    return F.normalize(g - g.mean(1, keepdim=True), dim=1)


def _crop(x: torch.Tensor, side: float, top: float, left: float) -> torch.Tensor:
    """The crop of ``side`` of each side at (top, left) shares of the frame, resized back."""
    h, w = x.shape[-2:]
    ch, cw = max(1, round(side * h)), max(1, round(side * w))
    return crop_back(x, min(round(top * h), h - ch), min(round(left * w), w - cw), ch, cw)


def view_images(x: torch.Tensor, views: CopyViews) -> Iterator[torch.Tensor]:
    """Every view of the photos ``x`` (N x 3 x H x W), one N x 3 x H x W tensor at a time."""
    x = x.float()
    for flip in (False, True) if views.mirrored else (False,):
        src = x.flip(-1) if flip else x
        for box in views.boxes():
            yield _crop(src, *box)
        for d in views.rotations:
            turned = rotate(src, d)
            for box in views.rotated_boxes():
                yield _crop(turned, *box)


class CopyDetector:
    """Scores samples by their best normalised cross-correlation with any view of each training photo."""

    def __init__(self, photos: torch.Tensor, labels: torch.Tensor, *, views: CopyViews | None = None,
                 photo_chunk: int = 256, max_cache_bytes: int = 2 << 30) -> None:
        if photos.ndim != 4 or photos.shape[1] != 3 or len(photos) != len(labels) or not len(photos):
            raise ValueError(f"need N x 3 x H x W training photos with N labels, got {tuple(photos.shape)} and {len(labels)}")
        self.views = views or CopyViews()
        self.photos, self.labels = photos.float().clamp(0, 1), torch.as_tensor(labels).long()
        self.photo_chunk = photo_chunk
        d = self.views.resolution ** 2
        self._cache: list[torch.Tensor] | None = None
        if self.views.count() * len(photos) * d * 4 <= max_cache_bytes:
            self._cache = [self._chunk_features(s) for s in range(0, len(photos), photo_chunk)]

    def _chunk_features(self, start: int) -> torch.Tensor:
        """V x chunk x D features of the views of photos ``start : start + photo_chunk``."""
        part = self.photos[start : start + self.photo_chunk]
        return torch.stack([copy_features(v, self.views.resolution) for v in view_images(part, self.views)])

    def per_photo(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """N x P: each sample's best correlation with any view of each training photo."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"samples must be N x 3 x H x W, got {tuple(x.shape)}")
        feats = copy_features(x.float().clamp(0, 1), self.views.resolution)
        out = torch.empty(len(x), len(self.photos))
        for k, s in enumerate(range(0, len(self.photos), self.photo_chunk)):
            t = self._cache[k] if self._cache is not None else self._chunk_features(s)  # V x c x D
            v, c, d = t.shape
            flat = t.reshape(v * c, d).T
            for b in range(0, len(x), batch_size):
                out[b : b + batch_size, s : s + c] = (feats[b : b + batch_size] @ flat).view(-1, v, c).amax(1)
        return out

    def per_identity(self, x: torch.Tensor, n_identities: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(N x I best correlation with each identity's photos, the N x P per-photo scores it came from)."""
        p = self.per_photo(x)
        n = len(p)
        return torch.full((n, n_identities), -math.inf).scatter_reduce(1, self.labels.expand(n, -1), p, "amax"), p

    def best_photo(self, per_photo: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """For each sample, the photo of ``identity`` (N) it correlates with best."""
        return per_photo.masked_fill(self.labels.unsqueeze(0) != identity.unsqueeze(1), -math.inf).argmax(1)
