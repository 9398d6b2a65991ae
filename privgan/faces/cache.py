"""Align many image files once: per-file disk cache of aligned crops (and of "no face" results).

A file's cache key is its resolved path (a symlinked folder hits the cache of the real one), a
hash of its content (an edited file is aligned again) and the aligner's version (mode, size,
threshold).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from privgan.faces.align import MIN_IMAGE_SIDE, NO_FACE, TOO_SMALL, WHOLE, FaceAligner
from privgan.paths import cache_root

log = logging.getLogger(__name__)

#: Skip reasons used in ``AlignedFaces.skipped`` (``NO_FACE`` and ``TOO_SMALL`` come from ``privgan.faces.align``).
MISSING, EMPTY, UNREADABLE = "missing", "empty file", "unreadable"
SKIP_REASONS = (MISSING, EMPTY, UNREADABLE, TOO_SMALL, NO_FACE)


@dataclass(frozen=True)
class AlignedFaces:
    """Aligned crops of the files that had a face, in input order, and why the others were skipped."""

    images: torch.Tensor = field(repr=False)  # N_ok x 3 x size x size RGB: uint8 (align_files), float in [0, 1] (load_aligned)
    paths: list[Path]
    skipped: dict[str, list[str]]  # reason (MISSING, EMPTY, UNREADABLE, TOO_SMALL, NO_FACE) -> file paths
    n_cached: int = 0  # files answered from the disk cache (crops and "no face" records)
    whole: list[Path] = field(default_factory=list)  # files taken whole as face crops (align="auto" or "none")

    @property
    def n_skipped(self) -> int:
        """Number of input files that produced no crop."""
        return sum(len(v) for v in self.skipped.values())

    @property
    def n_files(self) -> int:
        """Number of input files (used and skipped)."""
        return len(self.paths) + self.n_skipped

    @property
    def dropped_share(self) -> float:
        """Share of the input files that produced no crop (0 when there were none)."""
        return self.n_skipped / self.n_files if self.n_files else 0.0

    def reasons(self) -> str:
        """Skip counts per reason, e.g. ``no face: 3, unreadable: 1`` (``none`` when nothing was skipped)."""
        return ", ".join(f"{k}: {len(v)}" for k, v in sorted(self.skipped.items()) if v) or "none"

    def summary(self) -> str:
        """One line with the counts: aligned, cached, skipped per reason and the share dropped."""
        whole = f", {len(self.whole)} taken whole as face crops" if self.whole else ""
        return (
            f"{len(self.paths)} aligned of {self.n_files} files "
            f"({self.n_cached} from cache{whole}); skipped {self.n_skipped} "
            f"({100 * self.dropped_share:.0f}% dropped; {self.reasons()})"
        )


def default_cache_dir(size: int) -> Path:
    """Where aligned crops of a given size are cached by default."""
    return cache_root() / "aligned" / f"v1-{size}"


def _key(real_path: Path, data: bytes, version: str) -> str:
    """Cache key of a file: its resolved path, a hash of its content and the aligner's version."""
    raw = f"{real_path}\0{hashlib.sha1(data).hexdigest()}\0{version}"
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()


def _atomic_write(dest: Path, data: bytes) -> None:
    """Temp file and rename, without privgan.atomic's fsync: a lost cache entry is recomputed, and thousands of fsyncs are slow."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=dest.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB of any PIL mode; 16-bit and float grayscale (e.g. 16-bit PGM, TIFF) scaled to 8 bits, not clipped."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        a = np.asarray(im, dtype=np.float64)
        top = a.max(initial=0.0)
        scale = 1.0 if im.mode == "F" and top <= 1.0 else 255.0 if top <= 255 else 65535.0
        im = Image.fromarray(np.clip(a / scale * 255, 0, 255).round().astype(np.uint8))
    return im.convert("RGB")


def read_rgb(path: Path | str | bytes) -> Image.Image | None:
    """Fully decoded, upright (EXIF orientation applied) RGB image of a file or its bytes; None when unreadable."""
    try:
        with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as im:
            im.load()
            return _to_rgb(ImageOps.exif_transpose(im))
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None


def align_files(
    paths: Sequence[Path | str],
    *,
    aligner: FaceAligner | None = None,
    size: int = 112,
    cache_dir: Path | None = None,
    progress: bool = False,
    align: str = "mtcnn",
    min_face_prob: float = 0.95,
) -> AlignedFaces:
    """Align image files to size x size crops, reusing and filling a per-file disk cache; bad files are skipped.

    ``align`` (``mtcnn`` or ``auto``) and ``min_face_prob`` build the aligner when none is given
    (see ``privgan.faces.align``). Skipped files are listed by reason; images under
    ``MIN_IMAGE_SIDE`` px a side are skipped as "too small", each named in a log warning.
    """
    if aligner is not None and aligner.size != size:
        raise ValueError(f"aligner.size={aligner.size} differs from size={size}")
    if aligner is None:
        aligner = FaceAligner(size=size, min_prob=min_face_prob, mode=align)  # MTCNN is built on first use only
    version = aligner.version
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir(size)
    skipped: dict[str, list[str]] = {r: [] for r in SKIP_REASONS}
    crops: list[np.ndarray] = []
    ok_paths: list[Path] = []
    whole: list[Path] = []
    n_cached = 0
    for i, p in enumerate(paths):
        if progress and i and i % 500 == 0:
            print(f"align_files: {i}/{len(paths)} files, {len(ok_paths)} aligned, {n_cached} cached", flush=True)
        path = Path(p).expanduser().absolute()
        try:
            real = path.resolve(strict=True)
            data = real.read_bytes()
        except OSError:
            skipped[MISSING if not path.exists() else UNREADABLE].append(str(p))
            continue
        if not data:
            skipped[EMPTY].append(str(p))
            continue
        key = _key(real, data, version)
        crop_file = root / key[:2] / f"{key}.png"
        noface_file = crop_file.with_suffix(".noface")
        whole_file = crop_file.with_suffix(".whole")
        if crop_file.is_file():
            cached = read_rgb(crop_file)
            if cached is not None and cached.size == (size, size):
                crops.append(np.asarray(cached))
                ok_paths.append(Path(p))
                if whole_file.is_file():
                    whole.append(Path(p))
                n_cached += 1
                continue
        elif noface_file.is_file():
            skipped[NO_FACE].append(str(p))
            n_cached += 1
            continue
        img = read_rgb(data)
        if img is None:
            skipped[UNREADABLE].append(str(p))
            continue
        if min(img.size) < MIN_IMAGE_SIDE:
            log.warning("privgan faces: %s is %d x %d px, too small to hold a face (under %d px a side): skipped",
                        p, img.width, img.height, MIN_IMAGE_SIDE)
            skipped[TOO_SMALL].append(str(p))
            continue
        try:
            crop, how = aligner.process(img)
        except Exception as e:  # name the file: a detector error otherwise names none
            raise RuntimeError(f"face detection failed on {str(p)!r} ({img.width} x {img.height} px): {e}") from e
        if crop is None:
            if how == NO_FACE:
                _atomic_write(noface_file, b"")
            skipped[how].append(str(p))
            continue
        if how == WHOLE:
            _atomic_write(whole_file, b"")
            whole.append(Path(p))
        _atomic_write(crop_file, _png_bytes(crop))
        crops.append(crop)
        ok_paths.append(Path(p))
    if crops:
        images = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    else:
        images = torch.empty(0, 3, size, size, dtype=torch.uint8)
    result = AlignedFaces(images=images, paths=ok_paths, skipped=skipped, n_cached=n_cached, whole=whole)
    if progress:
        print(f"align_files: {result.summary()}", flush=True)
    return result
