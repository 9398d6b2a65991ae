"""Crash-safe file writes: a temp file beside the target, flushed to disk, then renamed onto it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temp file beside ``path`` to write; renamed onto ``path`` only when the block succeeds.

    The temp file is flushed to disk (fsync) before the rename, so a crash, a full disk or an
    exception mid-write leaves the old file (or none) under the final name, never half a file,
    and no temp file behind.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], *, mode: str = "w", **open_kwargs: Any) -> Path:
    """Open a temp file beside ``path``, let ``write(f)`` fill it, and rename it onto ``path`` (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as f:
            write(f)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write via a temp file in the same folder and rename, so readers never see half a file (nor a temp file after a failure)."""
    return atomic_write(path, lambda f: f.write(text))
