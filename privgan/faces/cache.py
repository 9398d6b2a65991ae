"""Align many image files once: per-file disk cache of aligned crops (and of "no face" results)."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from privgan.faces.align import FaceAligner
from privgan.paths import cache_root

#: Skip reasons used in ``AlignedFaces.skipped``.
MISSING, EMPTY, UNREADABLE, NO_FACE = "missing", "empty file", "unreadable", "no face"


@dataclass(frozen=True)
class AlignedFaces:
    """Aligned crops of the files that had a face, in input order, and why the others were skipped."""

    images: torch.Tensor = field(repr=False)  # N_ok x 3 x size x size RGB: uint8 (align_files), float in [0, 1] (load_aligned)
    paths: list[Path]
    skipped: dict[str, list[str]]  # reason (MISSING, EMPTY, UNREADABLE, NO_FACE) -> file paths
    n_cached: int = 0  # files answered from the disk cache (crops and "no face" records)

    @property
    def n_skipped(self) -> int:
        """Number of input files that produced no crop."""
        return sum(len(v) for v in self.skipped.values())

    def summary(self) -> str:
        """One line with the counts: aligned, cached, skipped per reason."""
        reasons = ", ".join(f"{k}: {len(v)}" for k, v in sorted(self.skipped.items()) if v) or "none"
        return (
            f"{len(self.paths)} aligned of {len(self.paths) + self.n_skipped} files "
            f"({self.n_cached} from cache); skipped {self.n_skipped} ({reasons})"
        )


def default_cache_dir(size: int) -> Path:
    """Where aligned crops of a given size are cached by default."""
    return cache_root() / "aligned" / f"v1-{size}"


def _key(path: Path, st: os.stat_result, version: str) -> str:
    raw = f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{version}"
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()


def _atomic_write(dest: Path, data: bytes) -> None:
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


def read_rgb(path: Path) -> Image.Image | None:
    """Fully decoded RGB image, or None when the file is not a readable image (truncated, text, ...)."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None


def align_files(
    paths: Sequence[Path | str],
    *,
    aligner: FaceAligner | None = None,
    size: int = 112,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> AlignedFaces:
    """Align image files to size x size crops, reusing and filling a per-file disk cache; bad files are skipped."""
    if aligner is not None and aligner.size != size:
        raise ValueError(f"aligner.size={aligner.size} differs from size={size}")
    version = (aligner or FaceAligner(size=size)).version
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir(size)
    skipped: dict[str, list[str]] = {MISSING: [], EMPTY: [], UNREADABLE: [], NO_FACE: []}
    crops: list[np.ndarray] = []
    ok_paths: list[Path] = []
    n_cached = 0
    for i, p in enumerate(paths):
        if progress and i and i % 500 == 0:
            print(f"align_files: {i}/{len(paths)} files, {len(ok_paths)} aligned, {n_cached} cached", flush=True)
        path = Path(p).expanduser().absolute()
        try:
            st = path.stat()
        except OSError:
            skipped[MISSING].append(str(p))
            continue
        if st.st_size == 0:
            skipped[EMPTY].append(str(p))
            continue
        key = _key(path, st, version)
        crop_file = root / key[:2] / f"{key}.png"
        noface_file = crop_file.with_suffix(".noface")
        if crop_file.is_file():
            cached = read_rgb(crop_file)
            if cached is not None and cached.size == (size, size):
                crops.append(np.asarray(cached))
                ok_paths.append(Path(p))
                n_cached += 1
                continue
        elif noface_file.is_file():
            skipped[NO_FACE].append(str(p))
            n_cached += 1
            continue
        img = read_rgb(path)
        if img is None:
            skipped[UNREADABLE].append(str(p))
            continue
        if aligner is None:
            aligner = FaceAligner(size=size)
        crop = aligner.align(img)
        if crop is None:
            _atomic_write(noface_file, b"")
            skipped[NO_FACE].append(str(p))
            continue
        _atomic_write(crop_file, _png_bytes(crop))
        crops.append(crop)
        ok_paths.append(Path(p))
    if crops:
        images = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    else:
        images = torch.empty(0, 3, size, size, dtype=torch.uint8)
    result = AlignedFaces(
        images=images, paths=ok_paths, skipped=skipped, n_cached=n_cached
    )
    if progress:
        print(f"align_files: {result.summary()}", flush=True)
    return result
