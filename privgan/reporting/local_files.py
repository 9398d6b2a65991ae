"""Plain-file outputs beside a run: CSV/JSON tables and PNG images written atomically."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterable

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem

from privgan.atomic import atomic_path, atomic_write, atomic_write_text  # noqa: F401 - part of this module's API

#: Name of the lock file a fit holds in its run folder (see :class:`RunFolderLock`).
LOCK_NAME = ".privgan.lock"


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """JSON with non-finite floats kept as strings JSON readers accept (Infinity, NaN); atomic."""
    return atomic_write_text(path, json.dumps(obj, indent=1, default=_jsonable))


def write_csv(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    """CSV whose header is the union of keys in first-seen order; atomic."""
    rows = list(rows)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]

    def write(f: Any) -> None:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)

    return atomic_write(path, write, newline="")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that never leaves a truncated checkpoint under its final name.

    Lightning writes a local checkpoint through fsspec's transaction: a temp file in the system
    temp folder, then a move that becomes a copy when that folder is on another disk, so a full
    disk or a kill mid-copy leaves ``last.ckpt`` cut short. This writes a temp file beside the
    checkpoint, fsyncs it and renames it (one atomic step); remote paths go through Lightning's
    own writer. ``privgan fit`` sets it; pass ``Trainer(plugins=[AtomicCheckpointIO()])`` elsewhere.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        from fsspec.implementations.local import LocalFileSystem

        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options=storage_options)
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)
        return None


class RunFolderBusy(RuntimeError):
    """Another live process holds the run folder (the message names the folder, the pid and what to do)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return False
    return True


def read_lock(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The holder of a run folder's lock ({"pid", "host", "since"}), or None when unlocked or unreadable."""
    try:
        data = json.loads((Path(folder) / LOCK_NAME).read_text())
        return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def _ancestors() -> set[int]:
    """The pids of this process's parent, its parent, and so on (Linux /proc; just the parent elsewhere)."""
    out, pid = set(), os.getppid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return out


#: Set by a lock taken with ``share_with_children``: "<pid>:<folder>"; processes it starts (``ddp_spawn`` ranks) inherit it.
SHARED_LOCK_ENV = "PRIVGAN_RUN_LOCK"


def _same_run(held: dict[str, Any], folder: str | os.PathLike) -> bool:
    """Whether a lock record is this process's, or was shared with it by the process that started it (the DDP ranks
    that ``privgan fit --trainer.strategy ddp_spawn`` spawns run inside the CLI's lock)."""
    if held.get("host") != socket.gethostname():
        return False
    if held["pid"] == os.getpid():
        return True
    shared = os.environ.get(SHARED_LOCK_ENV, "")
    return shared == f"{held['pid']}:{Path(folder).resolve()}" and held["pid"] in _ancestors()


def lock_holder(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The *other* live process that holds ``folder`` (None when free, stale, or held by this run's own processes)."""
    held = read_lock(folder)
    if held is None or _same_run(held, folder):
        return None
    if held.get("host") == socket.gethostname() and not _pid_alive(held["pid"]):
        return None
    return held


def _busy_message(folder: Path, held: dict[str, Any]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held.get("since", 0)))
    return (f"run folder {str(folder)!r} is in use by another privgan run (pid {held['pid']} on {held.get('host', '?')}, "
            f"since {since}); two runs in one folder overwrite each other's curve and attack files. "
            "Give this run another trainer.default_root_dir, or wait for the other to end "
            f"(a lock left by a process that no longer runs is taken over; {LOCK_NAME} in the folder)")


class RunFolderLock:
    """One live process per run folder: ``<folder>/.privgan.lock`` holds the owner's pid.

    ``acquire`` creates the lock file atomically; a lock whose process is gone (same host) is
    taken over; one held by a live process raises :class:`RunFolderBusy`. Re-entrant within a
    process (the CLI and the curve callback may both hold it); the file goes at the last
    ``release``.
    """

    _held: dict[Path, int] = {}

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder).resolve()
        self.path = self.folder / LOCK_NAME
        self.acquired = False

    def acquire(self, *, share_with_children: bool = False) -> "RunFolderLock":
        """Take the lock (``share_with_children``: processes this one starts, e.g. ``ddp_spawn`` ranks, may hold it too)."""
        if self.acquired:
            return self
        if share_with_children:
            os.environ[SHARED_LOCK_ENV] = f"{os.getpid()}:{self.folder}"
        self.folder.mkdir(parents=True, exist_ok=True)
        if RunFolderLock._held.get(self.folder, 0) > 0 and lock_holder(self.folder) is None:
            RunFolderLock._held[self.folder] += 1
            self.acquired = True
            return self
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                mine = read_lock(self.folder)
                if mine is not None and mine["pid"] != os.getpid() and _same_run(mine, self.folder):
                    # the launching process holds it (a spawned DDP rank): share it, leave the file to its owner
                    RunFolderLock._held[self.folder] = RunFolderLock._held.get(self.folder, 0) + 1
                    self.acquired = True
                    return self
                held = lock_holder(self.folder)
                if held is not None:
                    raise RunFolderBusy(_busy_message(self.folder, held)) from None
                # stale (its process is gone) or ours from an earlier fit: take it over
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(record)
            RunFolderLock._held[self.folder] = 1
            self.acquired = True
            return self
        raise RunFolderBusy(f"could not take the lock {str(self.path)!r} (another process keeps re-creating it)")

    def release(self) -> None:
        if not self.acquired:
            return
        self.acquired = False
        n = RunFolderLock._held.get(self.folder, 1) - 1
        if n > 0:
            RunFolderLock._held[self.folder] = n
            return
        RunFolderLock._held.pop(self.folder, None)
        held = read_lock(self.folder)
        if held is not None and held["pid"] == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            if os.environ.get(SHARED_LOCK_ENV) == f"{os.getpid()}:{self.folder}":
                os.environ.pop(SHARED_LOCK_ENV)

    def __enter__(self) -> "RunFolderLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def check_folder_free(folder: str | os.PathLike) -> None:
    """Raise :class:`RunFolderBusy` when another live process holds ``folder``'s lock."""
    held = lock_holder(folder)
    if held is not None:
        raise RunFolderBusy(_busy_message(Path(folder), held))


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a CSV written by ``write_csv``, numbers parsed back to float."""
    with open(path, newline="") as f:
        return [{k: _num(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _num(v: str) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def _jsonable(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def image_grid(rows: list[torch.Tensor], *, labels: list[str] | None = None, path: str | os.PathLike,
               cell_inches: float = 1.1) -> Path:
    """Save rows of images (each N x 3 x H x W in [0, 1]) as one PNG grid, each row under its label.

    Axes are placed by hand: a long label sits in its own band above the row and never
    squeezes the images (tight_layout would shrink them to fit the text).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(r) for r in rows)
    band = 0.28 if labels else 0.05
    width = max(n * cell_inches, 6.0 if labels else 0.0)
    height = len(rows) * (cell_inches + band)
    fig = plt.figure(figsize=(width, height))
    for i, r in enumerate(rows):
        top = 1 - i * (cell_inches + band) / height
        if labels:
            fig.text(0.005, top - 0.02 * band / height * 3, labels[i], fontsize=7, va="top", ha="left")
        for j in range(n):
            ax = fig.add_axes((j * cell_inches / width, top - (band + cell_inches * 0.96) / height,
                               cell_inches * 0.96 / width, cell_inches * 0.96 / height))
            ax.axis("off")
            if j < len(r):
                ax.imshow(r[j].detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy(), interpolation="nearest")
    p = Path(path)
    try:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, dpi=100, format=p.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return p
