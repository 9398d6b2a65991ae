"""Planted truths for leakage checks: edited copies of training photos, and faces of people outside a study.

A "generator" that replays these must be caught (edited copies) or must score at chance
(outsiders); benchmarks and ``privgan release-check`` mix them into real samples to measure
what an attack or a filter catches.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from privgan.data.identity_folders import scan_identity_folders

#: The edits applied to every planted copy, in order.
COPY_EDITS = ("jpeg_q70", "crop_90pct", "flip", "brightness_pm10pct")


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Round-trip one 3 x H x W image in [0, 1] through JPEG at ``quality``."""
    arr = (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    back = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(back).permute(2, 0, 1)


def edited_copies(
    images: torch.Tensor, *, generator: torch.Generator | None = None, jpeg_quality: int = 70, crop: float = 0.9,
    brightness: float = 0.1,
) -> torch.Tensor:
    """Each image JPEG-compressed, centre-cropped to ``crop`` and resized back, flipped, brightness x U(1 ± ``brightness``)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be N x 3 x H x W, got {tuple(images.shape)}")
    if not 0 < crop <= 1:
        raise ValueError(f"crop must be in (0, 1], got {crop}")
    x = torch.stack([_jpeg(im, jpeg_quality) for im in images.float().cpu()])
    h, w = x.shape[-2:]
    ch, cw = round(h * (1 - crop) / 2), round(w * (1 - crop) / 2)
    if ch or cw:
        x = F.interpolate(x[..., ch : h - ch, cw : w - cw], size=(h, w), mode="bilinear", align_corners=False)
    x = x.flip(-1)
    g = generator or torch.Generator().manual_seed(0)
    factor = 1 + brightness * (2 * torch.rand(len(x), 1, 1, 1, generator=g) - 1)
    return (x * factor).clamp(0, 1)


def outsider_identities(root: str | os.PathLike, exclude: set[str], *, count: int | None = None, min_images: int = 1,
                        seed: int = 0) -> dict[str, list[Path]]:
    """People outside the study: identity folders under ``root`` not in ``exclude`` -> their sorted photos.

    Those with at least ``min_images`` photos are shuffled by ``random.Random(seed)`` and the first
    ``count`` (default all) kept in that order: every caller draws here, so one seed gives the same people.
    """
    folders = {n: f for n, f in scan_identity_folders(root).items() if n not in exclude and len(f) >= min_images}
    names = list(folders)
    if count is not None and len(names) < count:
        raise ValueError(f"{root}: {len(names)} identities outside the study with >= {min_images} photos, {count} needed")
    random.Random(seed).shuffle(names)
    return {n: folders[n] for n in names[:count]}


def outsider_faces(
    root: str | os.PathLike, exclude: set[str], *, n: int, size: int, per_identity: int = 1, seed: int = 0,
    cache_dir: Path | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """``n`` aligned faces (N x 3 x size x size in [0, 1]) of people outside ``exclude``, ``per_identity`` each, and their names."""
    from privgan.faces.preprocess import load_aligned

    faces, used = [], []
    for name, photos in outsider_identities(root, exclude, seed=seed).items():
        faces.append(load_aligned(photos[:per_identity], size=size, cache_dir=cache_dir).images)
        used += [name] * len(faces[-1])
        if len(used) >= n:
            break
    if len(used) < n:
        raise ValueError(f"{root}: only {len(used)} aligned outsider faces, {n} needed")
    return torch.cat(faces)[:n], used[:n]
