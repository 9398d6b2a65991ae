"""Planted truths for leakage checks: edited copies of training photos, faces of people outside a study, and LFW made unlike LFW.

A "generator" that replays these must be caught (edited copies) or must score at chance
(outsiders); benchmarks and ``privgan release-check`` mix them into real samples to measure
what an attack or a filter catches.
"""

from __future__ import annotations

import io
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from privgan.data.identity_folders import scan_identity_folders
from privgan.data.image_ops import grey3, resize, rotate

#: The edits :func:`edited_copies` applies to every copy, in order (its defaults; kept for its callers).
COPY_EDITS = ("jpeg_q70", "crop_90pct", "flip", "brightness_pm10pct")


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Round-trip one 3 x H x W image in [0, 1] through JPEG at ``quality``."""
    arr = (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    back = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(back).permute(2, 0, 1)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


# -- the family of edits a planted copy is drawn from -------------------------------------------------
@dataclass(frozen=True)
class Edit:
    """One named edit: ``fn(images, generator)`` maps float N x 3 x H x W in [0, 1] to edited images, same shape."""

    name: str
    description: str
    fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor]

    def __call__(self, images: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        x = _check(images)
        if not len(x):
            return x.clone()
        return self.fn(x, generator or torch.Generator().manual_seed(0)).clamp(0, 1).contiguous()


#: name -> :class:`Edit`: the edits someone might make to a training photo before passing it off as new.
EDITS: dict[str, Edit] = {}


def register_edit(name: str, description: str) -> Callable[[Callable], Callable]:
    """Decorator: add ``fn(images, generator) -> images`` to :data:`EDITS` under ``name``."""

    def deco(fn: Callable) -> Callable:
        if name in EDITS:
            raise ValueError(f"an edit named {name!r} is already registered")
        EDITS[name] = Edit(name, description, fn)
        return fn

    return deco


def _check(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be N x 3 x H x W, got {tuple(images.shape)}")
    return images.detach().float().cpu().clamp(0, 1)


@register_edit("crop", "random-offset crop of 80-95 % of the side, resized back")
def _edit_crop(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    frac = _uniform(n, 0.80, 0.95, g)
    out = []
    for i in range(n):
        ch, cw = max(1, round(h * float(frac[i]))), max(1, round(w * float(frac[i])))
        top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
        out.append(resize(x[i : i + 1, :, top : top + ch, left : left + cw], h, w))
    return torch.cat(out)


@register_edit("jpeg", "JPEG round trip at quality 50-90")
def _edit_jpeg(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    q = torch.randint(50, 91, (len(x),), generator=g)
    return torch.stack([_jpeg(im, int(qi)) for im, qi in zip(x, q)])


@register_edit("flip", "horizontal flip")
def _edit_flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x.flip(-1)


@register_edit("brightness", "brightness x U(0.85, 1.15)")
def _edit_brightness(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x * _uniform(len(x), 0.85, 1.15, g).view(-1, 1, 1, 1)


@register_edit("contrast", "contrast x U(0.85, 1.15) about the image's mean grey level")
def _edit_contrast(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    mean = grey3(x)[:, :1].mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * _uniform(len(x), 0.85, 1.15, g).view(-1, 1, 1, 1)


@register_edit("rotation", "rotation by U(-10, 10) degrees about the centre (edge pixels repeated into the corners)")
def _edit_rotation(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return rotate(x, _uniform(len(x), -10.0, 10.0, g))


@register_edit("grayscale", "grey levels (ITU-R 601 luma) in all three channels")
def _edit_grayscale(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return grey3(x)


@register_edit("resize", "downscaled to 60-90 % of the side and scaled back up")
def _editresize(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    s = _uniform(n, 0.60, 0.90, g)
    return torch.cat([resize(resize(x[i : i + 1], max(1, round(h * float(s[i]))), max(1, round(w * float(s[i])))), h, w)
                      for i in range(n)])


#: The edits of :data:`EDITS`, in registration order: what ``privgan release-check --plant-copies`` draws from.
EDIT_FAMILY: tuple[str, ...] = tuple(EDITS)


def apply_edit(images: torch.Tensor, name: str, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``images`` (float N x 3 x H x W in [0, 1]) edited by the registered edit ``name`` (parameters drawn per image)."""
    if name not in EDITS:
        raise ValueError(f"unknown edit {name!r}; choose from {', '.join(EDITS)}")
    return EDITS[name](images, generator=generator)


def planted_copies(
    images: torch.Tensor, k: int, *, edits: Sequence[str] = EDIT_FAMILY, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``k`` edited copies of ``images``, spread evenly over ``edits`` (round robin), each of a random source image.

    Returns the copies (k x 3 x H x W), the index into ``images`` each was made from, and each copy's edit name.
    """
    x = _check(images)
    if k < 0 or (k and not len(x)):
        raise ValueError(f"need k >= 0 copies of a non-empty image set, got k={k} and {len(x)} images")
    if not edits:
        raise ValueError("edits must name at least one edit")
    for e in edits:
        if e not in EDITS:
            raise ValueError(f"unknown edit {e!r}; choose from {', '.join(EDITS)}")
    g = generator or torch.Generator().manual_seed(0)
    src = torch.randint(0, max(1, len(x)), (k,), generator=g)
    names = [edits[i % len(edits)] for i in range(k)]
    out = torch.empty(k, *x.shape[1:])
    for e in dict.fromkeys(names):
        idx = torch.tensor([i for i, n in enumerate(names) if n == e])
        out[idx] = apply_edit(x[src[idx]], e, generator=g)
    return out, src, names


def edited_copies(
    images: torch.Tensor, *, generator: torch.Generator | None = None, jpeg_quality: int = 70, crop: float = 0.9,
    brightness: float = 0.1,
) -> torch.Tensor:
    """Each image JPEG-compressed, centre-cropped to ``crop`` and resized back, flipped, brightness x U(1 ± ``brightness``).

    The fixed composite of :data:`COPY_EDITS` (one copy per image, all four edits); for the family of
    single edits with random parameters see :data:`EDITS` and :func:`planted_copies`.
    """
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


#: The named shifts of :func:`unlike_lfw`.
DOMAIN_SHIFTS = ("tight_crop", "grayscale", "harsh_light")


def unlike_lfw(images: torch.Tensor, kind: str | tuple[str, ...] | list[str], *,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """LFW made to look unlike LFW, for testing verdicts off-LFW.

    ``images``: float N x 3 x H x W in [0, 1]. ``kind`` is one of :data:`DOMAIN_SHIFTS` (or a
    sequence of them, applied in order):

    - ``"tight_crop"``: the central 70 % cropped and resized back, like a pre-cropped tight face;
    - ``"grayscale"``: ITU-R 601 luma in all three channels;
    - ``"harsh_light"``: one-sided lighting, a horizontal gain ramp from about 0.35 to about 1.6
      (side and exact ends drawn per image from ``generator``) then a gamma in [1.2, 1.6], clamped.

    Deterministic for a given ``generator`` (default: seeded 0). Returns a new tensor, same shape.
    """
    if isinstance(kind, (tuple, list)):
        out = images
        for k in kind:
            out = unlike_lfw(out, k, generator=generator)
        return out
    if kind not in DOMAIN_SHIFTS:
        raise ValueError(f"unknown domain shift {kind!r}; choose from {', '.join(DOMAIN_SHIFTS)}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be N x 3 x H x W, got {tuple(images.shape)}")
    x = images.float().clamp(0, 1)
    n, _, h, w = x.shape
    if kind == "tight_crop":
        ch, cw = round(h * 0.15), round(w * 0.15)
        return F.interpolate(x[..., ch: h - ch, cw: w - cw], size=(h, w), mode="bilinear",
                             align_corners=False).clamp(0, 1)
    if kind == "grayscale":
        return grey3(x)
    g = generator or torch.Generator().manual_seed(0)
    lo = 0.3 + 0.1 * torch.rand(n, generator=g)
    hi = 1.5 + 0.2 * torch.rand(n, generator=g)
    gamma = 1.2 + 0.4 * torch.rand(n, generator=g)
    left = torch.rand(n, generator=g) < 0.5
    t = torch.linspace(0, 1, w)
    ramp = lo[:, None] + (hi - lo)[:, None] * t[None, :]
    ramp = torch.where(left[:, None], ramp.flip(-1), ramp)
    y = x.pow(gamma.view(n, 1, 1, 1)) * ramp.view(n, 1, 1, w)
    return y.clamp(0, 1)



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
