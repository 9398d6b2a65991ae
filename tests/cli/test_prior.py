"""privgan prior: the attacks' face prior is trained once per recipe and found again in the cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from privgan.attacks.priors import load_face_prior

ROOT = Path(__file__).resolve().parents[2]


def _tiny_gan_recipe(tmp_path: Path) -> Path:
    recipe = {
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "logger": False, "enable_progress_bar": False,
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": None, "save_last": True}}]},
        "model": {"class_path": "privgan.modules.GAN",
                  "init_args": {"image_size": 32, "latent_dim": 16, "g_width": 8, "d_width": 8}},
        "data": {"class_path": "privgan.data.synthetic.SyntheticIdentityDataModule",
                 "init_args": {"n_identities": 2, "per_identity": 8, "image_size": 32, "batch_size": 4}},
    }
    p = tmp_path / "tiny_gan.yaml"
    p.write_text(yaml.safe_dump(recipe))
    return p


def _prior(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**__import__("os").environ, "PRIVGAN_CACHE": str(cache), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "privgan.cli", "prior", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)


def test_a_prior_is_trained_once_per_recipe_and_read_back_as_a_face_prior(tmp_path):
    recipe, cache = _tiny_gan_recipe(tmp_path), tmp_path / "cache"
    first = _prior("--config", str(recipe), cache=cache)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = Path(first.stdout.strip().splitlines()[-1])
    assert ckpt.is_file() and ckpt.parent.parent.parent == cache / "priors" and "training the face prior" in first.stderr
    prior = load_face_prior(ckpt)
    assert prior.latent_dim == 16 and prior.image_size == 32
    stamp = ckpt.stat().st_mtime_ns
    again = _prior("--config", str(recipe), cache=cache)  # cached: no training
    assert again.returncode == 0 and Path(again.stdout.strip()) == ckpt and "training" not in again.stderr
    assert ckpt.stat().st_mtime_ns == stamp
    other = _prior("--config", str(recipe), "--set", "trainer.max_epochs=2", cache=cache)  # another recipe, another prior
    assert other.returncode == 0, other.stderr[-3000:]
    assert Path(other.stdout.strip().splitlines()[-1]).parent.parent != ckpt.parent.parent
