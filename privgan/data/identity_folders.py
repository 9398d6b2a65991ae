"""Identity-per-folder image trees (``root/<identity>/*.jpg``, the LFW layout) and labelled images of identities."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageFile

from privgan.paths import require_dir


def _pil_extensions() -> tuple[str, ...]:
    """File extensions of every format this PIL can decode, lower case, sorted.

    Save-only formats (PDF), stubs that need an outside handler (BUFR, GRIB, HDF5, WMF) and
    MPEG (identified, never decoded) are left out.
    """
    Image.init()

    def decodes(fmt: str) -> bool:
        if fmt not in Image.OPEN or fmt == "MPEG":
            return False
        factory = Image.OPEN[fmt][0]
        return not (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile))

    return tuple(sorted(ext.lower() for ext, fmt in Image.registered_extensions().items() if decodes(fmt)))


#: Image files the folder scanners take: every format PIL opens (.jpg, .png, .pgm/.ppm/.pbm, .tif, .webp, .bmp, .gif, ...).
IMAGE_EXTENSIONS = _pil_extensions()


@dataclass(frozen=True)
class LabeledImages:
    """Images (N x 3 x H x W float in [0, 1]) with integer identity labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def scan_identity_folders(
    root: str | os.PathLike, *, extensions: tuple[str, ...] = IMAGE_EXTENSIONS
) -> dict[str, list[Path]]:
    """Map each identity (sub-folder name) to its sorted image files; raise if none are found.

    Image files are those with an extension of a format PIL opens (``IMAGE_EXTENSIONS``, case
    ignored); hidden files (``.name``, e.g. macOS ``._x.jpg``) are left out. Symlinked identity
    folders and files are followed.
    """
    root = require_dir(root, "identity image folder")
    exts = {e.lower() for e in extensions}
    out: dict[str, list[Path]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.iterdir() if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in exts)
        if files:
            out[sub.name] = files
    if not out:
        shown = ", ".join(e for e in (".jpg", ".png", ".pgm", ".tif", ".webp", ".bmp") if e in exts)
        raise ValueError(
            f"{str(root)!r} holds no identity folders with images (any format PIL opens: {shown}, ...); "
            "expected root/<identity>/<image> as in LFW"
        )
    return out


def eligible_identities(folders: dict[str, list[Path]], min_images: int) -> list[str]:
    """Identities with at least ``min_images`` files, in sorted order."""
    return [name for name, files in folders.items() if len(files) >= min_images]
