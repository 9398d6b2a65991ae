"""Shared test set-up: W&B offline in a temp dir, LFW located through PRIVGAN_DATA."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from privgan.paths import lfw_root

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _wandb_offline(tmp_path_factory, monkeypatch):
    """Never reach a W&B server; keep its files out of $HOME."""
    d = tmp_path_factory.getbasetemp() / "wandb"
    d.mkdir(exist_ok=True)
    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(d))
    monkeypatch.setenv("WANDB_SILENT", "true")


def lfw_images() -> Path:
    """LFW's image folder, or skip the test with the reason."""
    p = lfw_root() / "images_deepfunneled"
    if not p.is_dir():
        pytest.skip(f"LFW not found at {p} (set PRIVGAN_DATA to the folder holding datasets/lfw)")
    return p


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    return lfw_images()


@pytest.fixture(scope="session")
def small_face_tree(tmp_path_factory, lfw_dir) -> Path:
    """A few LFW identities copied into a temp identity tree, plus bad files that must be skipped."""
    root = tmp_path_factory.mktemp("faces")
    names = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder"]
    for n in names:
        (root / n).mkdir()
        for f in sorted((lfw_dir / n).iterdir())[:8]:
            shutil.copy(f, root / n / f.name)
    for n in ["Hugo_Chavez", "Ariel_Sharon", "Jean_Chretien", "John_Ashcroft", "Junichiro_Koizumi", "Jacques_Chirac"]:
        (root / n).mkdir()
        for f in sorted((lfw_dir / n).iterdir())[:2]:
            shutil.copy(f, root / n / f.name)
    (root / "Colin_Powell" / "zero_bytes.jpg").write_bytes(b"")
    (root / "Tony_Blair" / "not_an_image.jpg").write_text("hello")
    good = sorted((lfw_dir / "Tony_Blair").iterdir())[20].read_bytes()
    (root / "Donald_Rumsfeld" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Aligned-face cache shared by the session's tests but not with the user's ~/.cache."""
    if "PRIVGAN_CACHE" not in os.environ or os.environ.get("PRIVGAN_TEST_SHARED_CACHE") != "1":
        monkeypatch.setenv("PRIVGAN_CACHE", str(tmp_path_factory.getbasetemp() / "privgan_cache"))
