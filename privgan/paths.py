"""Where shared data and caches live: ``PRIVGAN_DATA`` and ``PRIVGAN_CACHE``."""

from __future__ import annotations

import os
from pathlib import Path


class MissingDataError(FileNotFoundError):
    """Raised when a data folder or file privgan needs is not where it was looked for."""


def data_root() -> Path:
    """Root of shared assets: ``$PRIVGAN_DATA``, else ``../shared`` when that folder exists."""
    env = os.environ.get("PRIVGAN_DATA")
    if env:
        return Path(env).expanduser()
    for candidate in (Path.cwd().parent / "shared", Path(__file__).resolve().parents[2] / "shared"):
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared"


def lfw_root() -> Path:
    """LFW folder holding ``images_deepfunneled/`` and ``pairs.txt``."""
    return data_root() / "datasets" / "lfw"


def require_dir(path: str | os.PathLike, what: str) -> Path:
    """Return ``path`` as a Path, or raise MissingDataError saying what was expected there."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise MissingDataError(
            f"{what}: folder {str(p)!r} does not exist. Set PRIVGAN_DATA to the folder that holds "
            "datasets/ (default ../shared), pass the path explicitly, or run `privgan data fetch lfw`."
        )
    return p


def cache_root() -> Path:
    """Writable cache for aligned faces and downloaded weights: ``$PRIVGAN_CACHE`` or ~/.cache/privgan."""
    env = os.environ.get("PRIVGAN_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "privgan"
    root.mkdir(parents=True, exist_ok=True)
    return root
