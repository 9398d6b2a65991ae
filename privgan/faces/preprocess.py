"""The one face preprocessing: align (or take crops as they are), then the one named resizer.

Preprocessing changes every number computed on faces (embeddings, attack scores, FD-face), so,
as clean-fid names its resizer, it is one named choice used everywhere in privgan:
``load_aligned(files, size=..., align=...)`` with ``align`` in ``ALIGN_METHODS``, and
``resize_faces`` by ``RESIZE_METHOD``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from privgan.faces.cache import EMPTY, MISSING, UNREADABLE, AlignedFaces, align_files

#: ``mtcnn``: MTCNN + 5-point warp to the ArcFace 112 px template (disk-cached); ``none``: files are face crops.
ALIGN_METHODS = ("mtcnn", "none")
#: The one resizer: torch bilinear interpolation, antialiased, ``align_corners=False``, clamped to [0, 1].
RESIZE_METHOD = "torch-bilinear-antialias"


def resize_faces(x: torch.Tensor, size: int) -> torch.Tensor:
    """N x 3 x H x W float images in [0, 1] at ``size`` x ``size`` by ``RESIZE_METHOD``; unchanged when already that size."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def load_aligned(files: Sequence[str | Path], *, size: int, align: str = "mtcnn", cache_dir: Path | str | None = None) -> AlignedFaces:
    """Faces of ``files`` as float N x 3 x ``size`` x ``size`` in [0, 1], the paths that gave one, skipped files by reason.

    ``align="mtcnn"``: the most central face, aligned to the ArcFace template at 112 px
    (``align_files``, cached in ``cache_dir``; files without a face are skipped as "no face").
    ``align="none"``: each file is taken as an already-cropped face (read with PIL, EXIF
    orientation applied, converted to RGB; a non-square crop is stretched). Then ``resize_faces``.
    """
    if align == "mtcnn":
        res = align_files(files, cache_dir=Path(cache_dir) if cache_dir else None)
        return replace(res, images=resize_faces(res.images.float() / 255, size))
    if align != "none":
        raise ValueError(f"align must be one of {', '.join(ALIGN_METHODS)}, got {align!r}")
    skipped: dict[str, list[str]] = {MISSING: [], EMPTY: [], UNREADABLE: []}
    crops, paths = [], []
    for p in files:
        path = Path(p).expanduser()
        try:
            with Image.open(path) as im:
                rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.float32) / 255
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
            skipped[MISSING if not path.is_file() else EMPTY if not path.stat().st_size else UNREADABLE].append(str(p))
            continue
        crops.append(resize_faces(torch.from_numpy(rgb).permute(2, 0, 1)[None], size))
        paths.append(Path(p))
    return AlignedFaces(images=torch.cat(crops) if crops else torch.empty(0, 3, size, size), paths=paths, skipped=skipped)
