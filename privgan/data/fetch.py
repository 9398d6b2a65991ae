"""``privgan data fetch lfw``: download LFW (deep-funneled) and its protocol files where a network exists."""

from __future__ import annotations

import argparse
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from privgan.paths import data_root

LFW_BASE = "https://vis-www.cs.umass.edu/lfw/"
LFW_ARCHIVE = "lfw-deepfunneled.tgz"
LFW_PROTOCOL_FILES = ("pairs.txt", "people.txt", "pairsDevTrain.txt", "pairsDevTest.txt", "peopleDevTrain.txt", "peopleDevTest.txt", "lfw-names.txt")


def _download(url: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"cannot download {url}: {e}") from e
    tmp.replace(dest)
    return dest


def fetch_lfw(dest: Path | None = None, *, base_url: str = LFW_BASE) -> Path:
    """Download and unpack LFW into ``dest/datasets/lfw`` (default ``$PRIVGAN_DATA``); skip what exists."""
    root = (dest or data_root()) / "datasets" / "lfw"
    images = root / "images_deepfunneled"
    if not images.is_dir():
        with tempfile.TemporaryDirectory() as td:
            tgz = _download(base_url + LFW_ARCHIVE, Path(td) / LFW_ARCHIVE)
            with tarfile.open(tgz) as tf:
                tf.extractall(td, filter="data")
            top = next((p for p in Path(td).iterdir() if p.is_dir()), None)
            if top is None:
                raise RuntimeError(f"{LFW_ARCHIVE} held no folder of identities")
            root.mkdir(parents=True, exist_ok=True)
            shutil.move(str(top), images)
    for name in LFW_PROTOCOL_FILES:
        if not (root / name).exists():
            try:
                _download(base_url + name, root / name)
            except RuntimeError:
                if name == "pairs.txt":
                    raise
    return root


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="privgan data", description="Get data sets.")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download a data set")
    f.add_argument("name", choices=["lfw"])
    f.add_argument("--dest", default=None, help="folder that will hold datasets/ (default $PRIVGAN_DATA)")
    f.add_argument("--base-url", default=LFW_BASE, help="mirror holding lfw-deepfunneled.tgz and pairs.txt (file:// works)")
    a = p.parse_args(argv)
    root = fetch_lfw(Path(a.dest) if a.dest else None, base_url=a.base_url if a.base_url.endswith("/") else a.base_url + "/")
    print(f"LFW ready at {root}")
    return 0
