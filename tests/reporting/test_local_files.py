"""Galleries stay readable: long captions never shrink the faces."""

import numpy as np
import torch
from PIL import Image

from privgan.reporting.local_files import image_grid


def test_gallery_faces_keep_their_size_under_long_captions(tmp_path):
    rows = [torch.rand(4, 3, 32, 32) for _ in range(5)]
    caption = "Fernando_Henrique_Cardoso (member) sim 0.41; closest refs 0.46, 0.41, 0.36 " * 2
    path = image_grid(rows, labels=[caption] * 5, path=tmp_path / "g.png")
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    painted = (img < 235).any(-1)  # not background: the faces (and a little text)
    cell = 1.1 * 100 * 0.96  # 1.1 in cells at 100 dpi
    assert painted.sum() >= 0.85 * 5 * 4 * cell * cell, (painted.sum(), img.shape)  # the 20 faces fill their cells
    assert img.shape[1] >= 4 * cell


# -- crash-safe writes: nothing half-written under a final name, no temp file left behind --------------------------

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from privgan.reporting import local_files
from privgan.reporting.local_files import (AtomicCheckpointIO, RunFolderBusy, RunFolderLock, read_csv, write_csv,
                                           write_json)

ROOT = Path(__file__).resolve().parents[2]


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_write_json_failing_at_the_rename_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = write_json(tmp_path / "curve.json", {"points": [1]})
    monkeypatch.setattr(local_files.os, "replace", _disk_full)
    with pytest.raises(OSError):
        write_json(path, {"points": [1, 2]})
    assert json.loads(path.read_text()) == {"points": [1]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.json"]


def test_write_csv_failing_mid_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = write_csv(tmp_path / "curve.csv", [{"a": 1}])

    class Unprintable:
        def __str__(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        write_csv(path, [{"a": 2}] * 1000 + [{"a": Unprintable()}])  # the header and 1000 rows are written first
    assert read_csv(path) == [{"a": 1.0}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.csv"]


def test_a_checkpoint_cut_mid_write_never_sits_under_its_final_name(tmp_path, monkeypatch):
    import torch

    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)
    real_save = torch.save

    def save_half_then_fail(obj, f, *a, **k):  # a full disk: part of the file written, then ENOSPC
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:
            fh.truncate(max(1, os.path.getsize(f) // 2))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError):
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["epoch"] == 1  # the previous checkpoint, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_manifest_save_cut_by_a_full_disk_keeps_the_previous_manifest(tmp_path):
    """A file-size limit of 64 KiB stands in for a full disk: the write fails part-way."""
    from privgan.data.manifest import SplitManifest

    path = tmp_path / "manifest.json"
    small = SplitManifest(root="r", seed=0, identities=["a"], train={"a": ["x.jpg"]}, heldout={"a": ["y.jpg"]})
    small.save(path)
    code = f"""
import resource, signal
from privgan.data.manifest import SplitManifest
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
files = [f"/data/person_{{i}}/photo_{{j}}.jpg" for i in range(300) for j in range(10)]
big = SplitManifest(root="r", seed=0, identities=["a"], train={{"a": files}}, heldout={{"a": files}})
try:
    big.save({str(path)!r})
except OSError as e:
    print("failed:", e)
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "failed:" in r.stdout, r.stdout + r.stderr[-2000:]
    assert SplitManifest.load(path) == small
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


# -- one live process per run folder --------------------------------------------------------------------------------

def test_run_folder_lock_refuses_a_live_holder_takes_over_a_dead_one_and_is_reentrant(tmp_path):
    run = tmp_path / "run"
    with RunFolderLock(run) as lock:
        held = json.loads((run / ".privgan.lock").read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        with RunFolderLock(run):  # the same process again (the CLI and the curve callback both hold it)
            pass
        assert (run / ".privgan.lock").exists()
        # another process cannot take it while this one lives
        code = ("import sys; from privgan.reporting.local_files import RunFolderLock, RunFolderBusy\n"
                f"try:\n    RunFolderLock({str(run)!r}).acquire()\nexcept RunFolderBusy as e:\n    print(e); sys.exit(3)")
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 3 and f"pid {os.getpid()}" in r.stdout and str(run) in r.stdout, r.stdout + r.stderr[-2000:]
        assert lock.acquired
    assert not (run / ".privgan.lock").exists()
    # a lock left by a process that is gone is taken over; one held by a live process is not
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / ".privgan.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "since": 0}))
    with RunFolderLock(run):
        assert json.loads((run / ".privgan.lock").read_text())["pid"] == os.getpid()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".privgan.lock").write_text(json.dumps({"pid": alive.pid, "host": socket.gethostname(), "since": 0}))
        with pytest.raises(RunFolderBusy, match=f"pid {alive.pid}"):
            RunFolderLock(run).acquire()
    finally:
        alive.kill()
        alive.wait()


def test_a_lock_shared_with_children_lets_the_processes_it_starts_in_and_no_one_else(tmp_path):
    """privgan fit shares its lock with the DDP ranks it spawns; a child that was not given it, or another folder, is refused."""
    run, other = tmp_path / "run", tmp_path / "other"
    code = ("import sys; from privgan.reporting.local_files import RunFolderLock, RunFolderBusy\n"
            "try:\n    RunFolderLock(sys.argv[1]).acquire().release()\nexcept RunFolderBusy as e:\n    print(e); sys.exit(3)")

    def child(folder, env=None):
        return subprocess.run([sys.executable, "-c", code, str(folder)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env=env).returncode

    with RunFolderLock(run).acquire(share_with_children=True) as lock:
        assert child(run) == 0  # a process this one started (it inherits the shared lock)
        assert json.loads((run / ".privgan.lock").read_text())["pid"] == os.getpid()  # the owner's file left alone
        clean = {k: v for k, v in os.environ.items() if k != "PRIVGAN_RUN_LOCK"}
        assert child(run, clean) == 3  # a child not given the lock
        with RunFolderLock(other):
            pass
        assert lock.acquired
    assert "PRIVGAN_RUN_LOCK" not in os.environ and not (run / ".privgan.lock").exists()
