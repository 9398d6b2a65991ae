"""Identity-per-folder image trees (``root/<identity>/*.jpg``, the LFW layout) and labelled images of identities."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from privgan.paths import require_dir

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


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
    """Map each identity (sub-folder name) to its sorted image files; raise if none are found."""
    root = require_dir(root, "identity image folder")
    out: dict[str, list[Path]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in sub.iterdir() if f.is_file() and f.suffix.lower() in extensions)
        if files:
            out[sub.name] = files
    if not out:
        raise ValueError(
            f"{str(root)!r} holds no identity folders with images ({', '.join(extensions)}); "
            "expected root/<identity>/<image> as in LFW"
        )
    return out


def eligible_identities(folders: dict[str, list[Path]], min_images: int) -> list[str]:
    """Identities with at least ``min_images`` files, in sorted order."""
    return [name for name, files in folders.items() if len(files) >= min_images]
