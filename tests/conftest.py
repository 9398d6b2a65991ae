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


#: LFW people of the "unlike LFW" tree: 6 with 8 photos each, and 6 outsiders with 2 each.
UNLIKE_LFW_PEOPLE = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder", "Hugo_Chavez", "Ariel_Sharon")
UNLIKE_LFW_OUTSIDERS = ("Jean_Chretien", "John_Ashcroft", "Junichiro_Koizumi", "Jacques_Chirac", "Serena_Williams", "Vladimir_Putin")
#: The tight face box cut from LFW's 250 x 250 deep-funneled photos (x0, y0, x1, y1: brows to chin, no margin),
#: and the sides it is saved at (PGM, JPEG; the JPEGs are larger than align="auto"'s small-image rule).
UNLIKE_LFW_BOX, UNLIKE_LFW_SIDES = (88, 97, 164, 173), {"pgm": 96, "jpg": 176}


def _unlike_lfw(x: torch.Tensor) -> torch.Tensor:
    """Grayscale with harsh one-sided lighting: ``privgan.data.planted.unlike_lfw`` when present, else the same here."""
    try:
        from privgan.data.planted import unlike_lfw
    except ImportError:
        unlike_lfw = None
    if unlike_lfw is not None:
        return unlike_lfw(x, ("grayscale", "harsh_light"), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    n, _, _, w = x.shape
    lum = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand(-1, 3, -1, -1)
    lo, hi = 0.3 + 0.1 * torch.rand(n, generator=g), 1.5 + 0.2 * torch.rand(n, generator=g)
    gamma, left = 1.2 + 0.4 * torch.rand(n, generator=g), torch.rand(n, generator=g) < 0.5
    ramp = lo[:, None] + (hi - lo)[:, None] * torch.linspace(0, 1, w)[None]
    ramp = torch.where(left[:, None], ramp.flip(-1), ramp)
    return (lum.pow(gamma.view(n, 1, 1, 1)) * ramp.view(n, 1, 1, w)).clamp(0, 1)


@pytest.fixture(scope="session")
def unlike_lfw_tree(tmp_path_factory, lfw_dir) -> Path:
    """LFW photos made to look unlike LFW, in a temp identity tree ``root/<identity>/<file>``.

    Each photo is cut tight around the face (``UNLIKE_LFW_BOX``, no margin), turned grayscale and
    lit harshly from one side; even-numbered photos are written as 8-bit PGM at 96 px, odd ones as
    grayscale JPEG at 176 px (``UNLIKE_LFW_SIDES``). 6 identities with 8 photos
    (``UNLIKE_LFW_PEOPLE``) and 6 outsiders with 2 (``UNLIKE_LFW_OUTSIDERS``): 60 files.
    MTCNN at 0.95 finds about a quarter of these faces.
    """
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("unlike_lfw")
    jobs = [(n, 8) for n in UNLIKE_LFW_PEOPLE] + [(n, 2) for n in UNLIKE_LFW_OUTSIDERS]
    todo: dict[str, list[tuple[Path, Image.Image]]] = {"pgm": [], "jpg": []}
    i = 0
    for name, k in jobs:
        (root / name).mkdir()
        for f in sorted((lfw_dir / name).iterdir())[:k]:
            ext = "pgm" if i % 2 == 0 else "jpg"
            with Image.open(f) as im:
                crop = im.convert("RGB").crop(UNLIKE_LFW_BOX).resize((UNLIKE_LFW_SIDES[ext],) * 2, Image.BILINEAR)
            todo[ext].append((root / name / f"{f.stem}.{ext}", crop))
            i += 1
    for ext, items in todo.items():  # one batch per size: lighting drawn per photo
        x = torch.stack([torch.from_numpy(np.asarray(c, dtype=np.float32) / 255).permute(2, 0, 1) for _, c in items])
        for (dest, _), y in zip(items, _unlike_lfw(x)):
            gray = Image.fromarray((y[0].numpy() * 255).round().astype(np.uint8))  # 2-D uint8: mode L
            gray.save(dest, **({"quality": 90} if ext == "jpg" else {}))
    return root
