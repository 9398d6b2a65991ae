"""The one face preprocessing: align (or take crops as they are), then the one named resizer.

Preprocessing changes every number computed on faces (embeddings, attack scores, FD-face), so,
as clean-fid names its resizer, it is one named choice used everywhere in privgan:
``load_aligned(files, size=..., align=..., min_face_prob=...)`` with ``align`` in
``ALIGN_METHODS``, and ``resize_faces`` by ``RESIZE_METHOD``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from privgan.faces.resize import RESIZE_METHOD, resize_faces  # noqa: F401 - part of this module's API
from privgan.faces.cache import EMPTY, MISSING, UNREADABLE, AlignedFaces, align_files, read_rgb

#: ``auto``: MTCNN alignment, and photos that are already face crops taken whole (the rule is in
#: ``privgan.faces.align``); ``mtcnn``: MTCNN + 5-point warp to the ArcFace 112 px template only
#: (both disk-cached); ``none``: every file is a face crop.
ALIGN_METHODS = ("auto", "mtcnn", "none")
#: MTCNN's default probability threshold for a face to align (the ``min_face_prob`` key).
MIN_FACE_PROB = 0.95



def check_align(align: str | bool, min_face_prob: float = MIN_FACE_PROB) -> str:
    """The align method by name (``True`` means ``mtcnn``, ``False`` ``none``); raises naming the valid values."""
    if isinstance(align, bool):
        align = "mtcnn" if align else "none"
    if align not in ALIGN_METHODS:
        raise ValueError(f"align must be one of {', '.join(ALIGN_METHODS)} (privgan.faces.ALIGN_METHODS), got {align!r}")
    if not isinstance(min_face_prob, (int, float)) or not 0.0 <= min_face_prob <= 1.0:
        raise ValueError(f"min_face_prob must be a probability in [0, 1], got {min_face_prob!r}")
    return align


def load_aligned(
    files: Sequence[str | Path],
    *,
    size: int,
    align: str | bool = "auto",
    min_face_prob: float = MIN_FACE_PROB,
    cache_dir: Path | str | None = None,
) -> AlignedFaces:
    """Faces of ``files`` as float N x 3 x ``size`` x ``size`` in [0, 1], the paths that gave one, skipped files by reason.

    ``align="mtcnn"``: the most central face with MTCNN probability >= ``min_face_prob``,
    aligned to the ArcFace template at 112 px (``align_files``, cached in ``cache_dir``; files
    without one are skipped as "no face"). ``align="auto"`` (default): the same, and photos that
    are already face crops are taken whole (rule in ``privgan.faces.align``; listed in ``whole``).
    ``align="none"``: each file is taken as an already-cropped face (a non-square crop is
    stretched, taken at any size). Images are read with PIL, EXIF orientation applied, converted to
    RGB. With a detector, images under ``MIN_IMAGE_SIDE`` px a side are skipped as "too small"
    (each named in a log warning). Then ``resize_faces``.
    """
    align = check_align(align, min_face_prob)
    if align in ("mtcnn", "auto"):
        res = align_files(files, cache_dir=Path(cache_dir) if cache_dir else None, align=align, min_face_prob=min_face_prob)
        return replace(res, images=resize_faces(res.images.float() / 255, size))
    skipped: dict[str, list[str]] = {MISSING: [], EMPTY: [], UNREADABLE: []}
    crops, paths = [], []
    for p in files:
        path = Path(p).expanduser()
        if not path.is_file():
            skipped[MISSING].append(str(p))
            continue
        if path.stat().st_size == 0:
            skipped[EMPTY].append(str(p))
            continue
        img = read_rgb(path)
        if img is None:
            skipped[UNREADABLE].append(str(p))
            continue
        rgb = np.asarray(img, dtype=np.float32) / 255
        crops.append(resize_faces(torch.from_numpy(rgb).permute(2, 0, 1)[None], size))
        paths.append(Path(p))
    return AlignedFaces(images=torch.cat(crops) if crops else torch.empty(0, 3, size, size), paths=paths, skipped=skipped,
                        whole=list(paths))
