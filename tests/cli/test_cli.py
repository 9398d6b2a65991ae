"""`privgan` end to end: a tiny recipe trains on real LFW faces with W&B offline, resumes, sweeps."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from privgan.callbacks.rng import RNG_KEY
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
    # privgan fit keeps the random state in its checkpoints (privgan.callbacks.RandomState), for the next resume
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved[RNG_KEY]["epoch"] == 2 and saved[RNG_KEY]["at_epoch_end"] and len(saved[RNG_KEY]["loaders"]) == 1
    # the trained split model is evaluated from its checkpoint by `privgan test`
    r = privgan("test", "--config", str(RECIPE), "--config", str(tiny), f"--trainer.default_root_dir={run}",
                "--trainer.logger=false", f"--ckpt_path={tmp_path / 'ckpt' / 'last.ckpt'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "utility/test_acc" in r.stdout


def test_every_fit_gets_one_random_state_callback_first():
    from privgan.callbacks import RandomState
    from privgan.cli.attack import load_recipe

    _, _, callbacks = load_recipe([str(RECIPE)])
    assert isinstance(callbacks[0], RandomState) and sum(isinstance(c, RandomState) for c in callbacks) == 1


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


# -- the faults a reliability probe found: resume, sweep --skip-done, one run per folder, safe writes, early checks --

import os

import lightning as L

from privgan.cli import main as cli_main


class InterruptAtEpoch(L.Callback):
    """Test helper for a recipe: Ctrl-C (KeyboardInterrupt) at the start of ``epoch`` when $PRIVGAN_TEST_INTERRUPT is set."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if os.environ.get("PRIVGAN_TEST_INTERRUPT") and trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


def synthetic_recipe(tmp_path: Path, epochs: int = 1, *, interrupt: bool = False) -> Path:
    """A whole recipe on synthetic identities (no faces, no W&B): split classifier, membership attack, curve, and the
    ModelCheckpoint the shipped recipes use (dirpath left null). A CSV logger, whose run id changes per fit, as W&B's does."""
    callbacks = [
        {"class_path": "privgan.callbacks.MembershipAttack", "init_args": {"config": {"shadow_models": 0, "n_boot": 20}}},
        {"class_path": "privgan.callbacks.PrivacyUtilityCurve", "init_args": {"plot": False}},
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"save_last": True, "save_on_train_epoch_end": True}},
    ]
    if interrupt:
        callbacks.insert(0, {"class_path": "tests.cli.test_cli.InterruptAtEpoch", "init_args": {"epoch": 1}})
    recipe = {
        "seed_everything": 0,
        "trainer": {"max_epochs": epochs, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                    "enable_model_summary": False, "log_every_n_steps": 1,
                    "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "."}}],
                    "callbacks": callbacks},
        "model": {"class_path": "privgan.modules.SplitClassifier", "init_args": {"width": 4, "split_at": "stage1"}},
        "data": {"class_path": "privgan.data.synthetic.SyntheticIdentityDataModule",
                 "init_args": {"n_identities": 3, "per_identity": 8, "aux_images": 8, "image_size": 16, "batch_size": 6}},
    }
    p = tmp_path / ("synthetic_interrupt.yaml" if interrupt else "synthetic.yaml")
    p.write_text(yaml.safe_dump(recipe))
    return p


def _fit(recipe: Path, run: Path, *extra: str) -> None:
    cli_main(["fit", "--config", str(recipe), f"--trainer.default_root_dir={run}", *extra])


def test_checkpoints_go_to_the_run_folder_and_are_written_atomically(tmp_path):
    """Whatever the logger, ModelCheckpoint(dirpath=null) writes <run>/checkpoints/, through the atomic checkpoint writer."""
    from privgan.cli import PrivganCLI, RecipeAsRunConfig
    from privgan.reporting.local_files import AtomicCheckpointIO

    run = tmp_path / "run"
    cli = PrivganCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True, run=False,
                     save_config_callback=RecipeAsRunConfig,
                     args=["--config", str(RECIPE), f"--trainer.default_root_dir={run}", f"--data.init_args.root={tmp_path}"])
    dirs = [cb.dirpath for cb in cli.trainer.checkpoint_callbacks]
    assert dirs == [os.path.realpath(run / "checkpoints")], dirs
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_ckpt_path_last_resumes_and_a_restart_refuses_to_overwrite_the_curve(tmp_path):
    recipe, run = synthetic_recipe(tmp_path), tmp_path / "run"
    _fit(recipe, run)
    first = load_curve(run)
    assert [p.epoch for p in first] == [0] and (run / "checkpoints" / "last.ckpt").exists()
    # the documented resume command continues the run: the curve keeps its point and gains one
    _fit(recipe, run, "--trainer.max_epochs=2", "--ckpt_path=last")
    curve = load_curve(run)
    assert [p.epoch for p in curve] == [0, 1]
    assert curve[0].to_dict() == first[0].to_dict()
    assert json.loads((run / "curve.json").read_text())["finished"] is True
    # starting over in the same folder would overwrite those points: refused, naming the folder and both ways out
    with pytest.raises(SystemExit) as e:
        _fit(recipe, run, "--trainer.max_epochs=2")
    msg = str(e.value)
    assert str(run) in msg and "--ckpt_path=last" in msg and "--overwrite" in msg
    assert [p.epoch for p in load_curve(run)] == [0, 1] and not (run / ".privgan.lock").exists()
    # ... unless asked to
    _fit(recipe, run, "--overwrite")
    assert [p.epoch for p in load_curve(run)] == [0]


def test_a_run_folder_held_by_a_live_run_is_refused_and_a_stale_lock_taken_over(tmp_path):
    import socket

    recipe, run = synthetic_recipe(tmp_path), tmp_path / "run"
    run.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".privgan.lock").write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(), "since": 0}))
        with pytest.raises(SystemExit) as e:
            _fit(recipe, run)
        assert str(run) in str(e.value) and f"pid {other.pid}" in str(e.value)
        assert not (run / "curve.json").exists() and not (run / "membership").exists()
    finally:
        other.kill()
        other.wait()
    _fit(recipe, run)  # the holder is gone: its lock is stale and taken over
    assert [p.epoch for p in load_curve(run)] == [0] and not (run / ".privgan.lock").exists()


def test_interrupted_sweep_rerun_resumes_to_the_same_frontier(tmp_path, monkeypatch, capfd):
    """`make demo` interrupted (Ctrl-C in a run) and rerun with --skip-done: the run resumes from its checkpoint, its curve
    loses and repeats no point, and the frontier is drawn from finished runs only."""
    from privgan.cli.sweep import main as sweep_main

    recipe = synthetic_recipe(tmp_path, epochs=2, interrupt=True)
    out = tmp_path / "sweep"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the runs (subprocesses) import the interrupting test callback
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PRIVGAN_TEST_INTERRUPT", "1")
    args = ["--config", str(recipe), "--grid", "model.init_args.activation_noise=0", "--out", str(out), "--skip-done"]
    assert sweep_main(args) == 1
    rdir = out / "activation_noise=0"
    partial = json.loads((rdir / "curve.json").read_text())
    assert partial["finished"] is False and [p["epoch"] for p in partial["points"]] == [0]
    assert "unfinished" in (out / "sweep.csv").read_text() and not (out / "frontier.png").exists()
    monkeypatch.delenv("PRIVGAN_TEST_INTERRUPT")
    capfd.readouterr()
    assert sweep_main(args) == 0
    printed = capfd.readouterr().out
    assert "resuming from" in printed and f"--ckpt_path={rdir / 'checkpoints' / 'last.ckpt'}" in printed, printed[-2000:]
    done = json.loads((rdir / "curve.json").read_text())
    assert done["finished"] is True and done["epochs"] == 2
    assert [p["epoch"] for p in done["points"]] == [0, 1] and done["points"][0] == partial["points"][0]
    rows = [ln.split(",") for ln in (out / "sweep.csv").read_text().splitlines()]
    row = dict(zip(rows[0], rows[1]))
    assert row["status"] == "finished" and row["epoch"] == "1" and (out / "frontier.png").exists()
    # a finished run is skipped, and the frontier stays the same
    before = (out / "sweep.csv").read_text()
    assert sweep_main(args) == 0
    assert "already done, skipped" in capfd.readouterr().out
    assert (out / "sweep.csv").read_text() == before


def test_bad_model_values_are_named_before_any_data_work(tmp_path):
    """Checked when the recipe is read: the data root does not even exist, and no W&B run starts."""
    for key, value, words in (("width", "0", ("width", ">= 1")), ("activation_noise", "-1", ("activation_noise", ">= 0")),
                              ("clip_norm", "-2", ("clip_norm", "> 0")), ("norm", "layer", ("norm", "group, batch, none"))):
        with pytest.raises(ValueError) as e:
            cli_main(["fit", "--config", str(RECIPE), f"--model.init_args.{key}={value}", f"--data.init_args.root={tmp_path / 'nowhere'}",
                      f"--trainer.default_root_dir={tmp_path / 'r'}"])
        assert all(w in str(e.value) for w in words), (key, str(e.value))
    assert not (tmp_path / "r" / "wandb").exists()


@pytest.mark.parametrize("content", [b"", b"# nothing but a comment\n", bytes(range(256)) * 4, b"- a\n- list\n"])
def test_an_empty_or_binary_recipe_is_named(tmp_path, content):
    bad = tmp_path / "recipe.yaml"
    bad.write_bytes(content)
    with pytest.raises(SystemExit) as e:
        cli_main(["fit", "--config", str(RECIPE), "--config", str(bad)])
    assert str(bad) in str(e.value) and any(w in str(e.value) for w in ("empty", "binary", "not a mapping")), str(e.value)


@pytest.mark.ddp
def test_fit_on_two_spawned_processes_runs_inside_the_clis_run_folder_lock(tmp_path, small_face_tree):
    """privgan fit --trainer.strategy dp_ddp_spawn: the spawned rank 0 writes the curve in the folder the CLI locked
    (it used to refuse its own run: "run folder ... is in use by another privgan run")."""
    run = tmp_path / "run"
    tiny = tiny_recipe(tmp_path, small_face_tree, epochs=1)
    r = privgan("fit", "--config", str(RECIPE), "--config", str(tiny), "--config", str(ROOT / "recipes/split_lfw_dp.yaml"),
                f"--trainer.default_root_dir={run}", "--trainer.accelerator=cpu", "--trainer.devices=2",
                "--trainer.strategy=dp_ddp_spawn", "--trainer.logger=false", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (point,) = load_curve(run)
    assert math.isfinite(point.epsilon) and {"membership", "inversion"} <= set(point.results)
    assert not (run / ".privgan.lock").exists()
