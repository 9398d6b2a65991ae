"""`privgan` end to end: a tiny recipe trains on real LFW faces with W&B offline, resumes, sweeps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from privgan.reporting.points import load_curve
from tests.wandb_records import run_contents

ROOT = Path(__file__).resolve().parents[2]
NAMESPACES = ("privacy/", "utility/", "dp/", "train/", "val/", "test/", "curve/", "trainer/", "_")
RECIPE = ROOT / "recipes" / "split_lfw.yaml"

pytestmark = pytest.mark.lfw


def tiny_recipe(tmp_path: Path, face_root: Path, epochs: int = 2) -> Path:
    """Overrides that shrink the real recipe to seconds: 4 identities, small net, cheap attacks."""
    over = {
        "trainer": {
            "max_epochs": epochs,
            "callbacks": [
                {"class_path": "privgan.callbacks.MembershipAttack",
                 "init_args": {"every_n_epochs": 1, "config": {"shadow_models": 2, "n_boot": 50}}},
                {"class_path": "privgan.callbacks.InversionAttack", "init_args": {
                    "every_n_epochs": 2, "log_gallery": True, "config": {
                        "n_targets": 4, "whitebox_steps": 10, "tv_weights": [0.1], "decoder_epochs": 1, "pair_far": 0.05}}},
                {"class_path": "privgan.callbacks.PrivacyUtilityCurve"},
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                 "init_args": {"save_last": True, "save_on_train_epoch_end": True, "dirpath": str(tmp_path / "ckpt")}},
            ],
        },
        "model": {"init_args": {"width": 8}},
        "data": {"init_args": {"root": str(face_root), "n_identities": 4, "min_images": 8, "max_images": None,
                               "aux_identities": 6, "aux_max_images": 2, "image_size": 32, "batch_size": 8}},
    }
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(over))
    return p


def privgan(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "privgan.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_fit_tiny_recipe_then_resume(tmp_path, small_face_tree):
    run = tmp_path / "run"
    tiny = tiny_recipe(tmp_path, small_face_tree)
    r = privgan("fit", "--config", str(RECIPE), "--config", str(tiny), f"--trainer.default_root_dir={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    curve = load_curve(run)
    assert [p.epoch for p in curve] == [0, 1]
    last = curve[-1]
    assert set(last.results) == {"membership", "inversion"} and last.epsilon == float("inf") and last.delta is None
    for name, signal in (("membership", "auc"), ("membership", "lira_offline_auc"), ("inversion", "reid_rate"),
                         ("inversion", "reid_top1"), ("inversion", "psnr_db"), ("inversion", "decoder_ssim")):
        assert last.signal(f"{name}/{signal}") is not None, (name, signal)
    assert last.results["inversion"].signals["reid_rate"].chance == 0.05  # chance follows the configured pair_far
    for f in ("curve.csv", "curve.png", "manifest.json", "timing.json", "inversion/epoch_001_gallery.png",
              "membership/epoch_001_scores.csv", "membership/epoch_001.json"):
        assert (run / f).exists(), f
    # a real W&B run, offline, in the run folder, with the scalars and the curve table in it
    wb = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(wb) == 1 and wb[0].stat().st_size > 1000
    run_log = run_contents(wb[0])  # the offline transaction log, parsed into W&B's own protobuf records
    for key in ("privacy/membership_auc", "utility/val_acc", "curve/privacy_utility", "curve/privacy_utility_plot_table",
                "privacy/inversion_gallery", "privacy/membership_roc_table", "privacy/membership_roc_plot", "train/loss"):
        assert key in run_log["history"], (key, sorted(run_log["history"]))
    # one stable namespace: privacy/, utility/, dp/, train/ / val/ (losses), curve/, W&B's own
    stray = [k for k in run_log["history"] if not k.startswith(NAMESPACES) and k != "epoch"]
    assert not stray, stray
    cfg = run_log["config"]
    assert cfg["recipe"]["model"]["class_path"] .endswith("SplitClassifier"), cfg.get("recipe")
    assert cfg["recipe"]["data"]["init_args"]["n_identities"] == 4 and cfg["versions"]["torch"].startswith("2.14")
    # names and photo paths of real people stay out of W&B unless MemberManifestArtifact is added
    assert not [a for a in run_log["artifacts"] if a[1] == "manifest"], run_log["artifacts"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert len(manifest["identities"]) == 4
    # resume one more epoch: the curve keeps its points, adds one, duplicates none
    r = privgan("fit", "--config", str(RECIPE), "--config", str(tiny), f"--trainer.default_root_dir={run}",
                "--trainer.max_epochs=3", f"--ckpt_path={tmp_path / 'ckpt' / 'last.ckpt'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    curve2 = load_curve(run)
    assert [p.epoch for p in curve2] == [0, 1, 2]
    assert [p.to_dict() for p in curve2[:2]] == [p.to_dict() for p in curve]
    # the trained split model is evaluated from its checkpoint by `privgan test`
    r = privgan("test", "--config", str(RECIPE), "--config", str(tiny), f"--trainer.default_root_dir={run}",
                "--trainer.logger=false", f"--ckpt_path={tmp_path / 'ckpt' / 'last.ckpt'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "utility/test_acc" in r.stdout


def test_unknown_recipe_key_is_named(tmp_path):
    r = privgan("fit", "--config", str(RECIPE), "--model.init_args.noise_sigmaa=1", cwd=tmp_path)
    assert r.returncode != 0
    assert "noise_sigmaa" in r.stderr


def test_wrong_type_is_named(tmp_path):
    r = privgan("fit", "--config", str(RECIPE), "--model.init_args.width=wide", cwd=tmp_path)
    assert r.returncode != 0
    assert "width" in r.stderr


def test_bad_split_point_lists_valid_ones(tmp_path, small_face_tree):
    r = privgan("fit", "--config", str(RECIPE), "--model.init_args.split_at=stage7", "--trainer.max_epochs=1",
                f"--data.init_args.root={small_face_tree}", cwd=tmp_path)
    assert r.returncode != 0
    assert "stage7" in r.stderr and "stem, stage1, stage2, stage3, stage4" in r.stderr


def test_missing_data_folder_is_named(tmp_path):
    r = privgan("fit", "--config", str(RECIPE), f"--data.init_args.root={tmp_path / 'nowhere'}", "--trainer.max_epochs=1",
                "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path / 'r'}", cwd=tmp_path)
    assert r.returncode != 0
    assert "nowhere" in r.stderr and "does not exist" in r.stderr


def test_sweep_and_curve(tmp_path, small_face_tree):
    tiny = tiny_recipe(tmp_path, small_face_tree, epochs=1)
    out = tmp_path / "sweep"
    r = privgan("sweep", "--config", str(RECIPE), "--config", str(tiny), "--grid", "model.init_args.activation_noise=0,2",
                "--out", str(out), "--trainer.logger=false", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rows = (out / "sweep.csv").read_text().splitlines()
    assert len(rows) == 3 and "activation_noise" in rows[0]
    assert (out / "frontier.png").stat().st_size > 5000
    r = privgan("curve", str(out), "--out", str(tmp_path / "f.png"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "activation_noise=0" in r.stdout and "activation_noise=2" in r.stdout
    assert (tmp_path / "f.png").exists()


def test_sweep_grid_errors(tmp_path):
    r = privgan("sweep", "--config", str(RECIPE), "--grid", "model.init_args.activation_noise", cwd=tmp_path)
    assert r.returncode != 0 and "KEY=V1,V2" in r.stderr


def test_sweep_over_two_keys_and_its_wandb_sweep_config(tmp_path):
    r = privgan("sweep", "--config", str(RECIPE), "--grid", "model.init_args.split_at=stage1,stage3",
                "--grid", "model.init_args.activation_noise=0,0.5,1", "--out", str(tmp_path / "s"), "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("[")]
    assert len(lines) == 6 and lines[0].startswith("[1/6]")  # the product of the two grids
    assert "--model.init_args.split_at=stage3" in lines[-1] and "--model.init_args.activation_noise=1" in lines[-1]
    assert "split_at=stage3__activation_noise=1" in lines[-1]
    cfg_file = tmp_path / "sweep.yaml"
    r = privgan("sweep", "--config", str(RECIPE), "--grid", "model.init_args.split_at=stage1,stage3",
                "--grid", "model.init_args.activation_noise=0,0.5", "--wandb-sweep", str(cfg_file),
                "--wandb-metric", "privacy/inversion_reid_rate", "--trainer.max_epochs=3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = yaml.safe_load(cfg_file.read_text())
    assert cfg["method"] == "grid" and cfg["metric"] == {"name": "privacy/inversion_reid_rate", "goal": "minimize"}
    assert cfg["parameters"] == {"model.init_args.split_at": {"values": ["stage1", "stage3"]},
                                 "model.init_args.activation_noise": {"values": [0, 0.5]}}
    assert cfg["command"][-2:] == ["--trainer.max_epochs=3", "${args}"] and str(RECIPE) in cfg["command"]
    r = privgan("sweep", "--config", str(tmp_path / "missing.yaml"), "--grid", "a=1", cwd=tmp_path)
    assert r.returncode != 0 and "missing.yaml" in r.stderr
