"""Private models worth using: public pretraining, then DP fine-tuning by photo and by person (make bench-private).

    python benchmarks/private.py [--parts split,gan] [--out runs/bench-private]

Split classifier (the split benchmark's study: 16 LFW people with 40+ photos, recipes/split_lfw.yaml +
benchmarks/split_bench.yaml):

1. the study's split is written (``privgan data split``);
2. the public model trains on 128 other LFW people (recipes/split_lfw_public.yaml, kept clear of the
   study's people by name);
3. from it, three fine-tunes of ``--epochs`` epochs on the study: non-private, DP by photo and DP by
   person, both at ``--target-epsilon`` (δ = 1e-5), each attacked once at the end by LiRA (2 shadow
   models, started from the public weights as the target was).

Face GAN (``--parts gan``; recipes/gan_lfw.yaml, balanced and over-represented designs):

1. both designs' splits are written, and one public GAN trains for ``--public-minutes`` on LFW
   people outside both and outside the split study (recipes/gan_lfw_public.yaml), so it is also the
   face prior of ``benchmarks/attacks.py``; it resumes from its last checkpoint;
2. the public GAN alone is attacked on each study (``privgan attack identity_match``): FD-face and
   the share of samples that verify as some real person, with no private photo used;
3. ``--sweep``: the DP fine-tune (only D private, by person, ε ≤ ``--target-epsilon``) over
   n_critic x people per step on the balanced design, ``--sweep-epochs`` each; the table is kept
   in the JSON (``gan.sweep``) and the setting with the lowest FD-face whose samples still verify
   is used next;
4. per design, the non-private and the DP fine-tune from the public GAN, ``--gan-epochs`` each,
   attacked once at the end (identity match, 2,000 samples).

Writes ``benchmarks/results/private.json`` (``{"split": {...}, "gan": {...}, "cost": {...}}``, CIs as
``<metric>_ci``) and ``private.md``. Runs that finished are not run again (their curve.json says so).
``acc_public_only`` is chance: a classifier of the study's people cannot exist without their data.
Each run uses one torch thread; ``--jobs 2`` runs two fine-tunes side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from table_format import fmt  # benchmarks/ is on the path when a script runs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPLIT_BASE = ["recipes/split_lfw.yaml", "benchmarks/split_bench.yaml"]
GAN_BASE = ["recipes/gan_lfw.yaml"]
DESIGNS = {"balanced": [], "overrepresented": ["recipes/gan_lfw_overrepresented.yaml"]}


ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE=os.environ.get("WANDB_MODE", "offline"))


def run(cmd: list[str], log: Path) -> float:
    """Run a privgan command on one torch thread (its output to ``log``); seconds taken. Stops the benchmark when it fails."""
    print(" ".join(cmd), flush=True)
    t = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        rc = subprocess.call([sys.executable, "-m", "privgan.cli", *cmd], cwd=ROOT, env=ENV, stdout=f, stderr=subprocess.STDOUT)
    if rc:
        raise SystemExit(f"failed (exit {rc}): {' '.join(cmd)}; see {log}")
    return time.perf_counter() - t


def run_all(jobs: list[tuple[list[str], Path]], parallel: int) -> None:
    """Run privgan commands ``parallel`` at a time (each on one thread); stops when one fails."""
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for f in [pool.submit(run, cmd, log) for cmd, log in jobs]:
            f.result()


def finished(run_dir: Path) -> bool:
    f = run_dir / "curve.json"
    return f.is_file() and bool(json.loads(f.read_text()).get("finished"))


def configs(*paths: str | Path) -> list[str]:
    return [a for p in paths for a in ("--config", str(p))]


def finetune_recipe(out: Path, public_ckpt: Path, epochs: int, trainable: list[str] | None = None,
                    name: str = "finetune_callbacks") -> Path:
    """The bench's callbacks for a fine-tune: InitFrom the public model (``trainable``: the parts that train, None: all),
    LiRA once at the end, the curve, checkpoints."""
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"max_epochs": epochs, "callbacks": [
        {"class_path": "privgan.callbacks.InitFrom",
         "init_args": {"checkpoint": str(public_ckpt), "init_exclude": ["net.backbone.head"], "trainable": trainable}},
        {"class_path": "privgan.callbacks.MembershipAttack",
         "init_args": {"every_n_epochs": epochs, "config": {"shadow_models": 2}}},
        {"class_path": "privgan.callbacks.PrivacyUtilityCurve"},
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"dirpath": None, "save_last": True, "save_on_train_epoch_end": True}},
    ]}}))
    return path


def last_point(run_dir: Path) -> dict:
    """The run's last curve point as a flat row, with the LiRA AUC's CI."""
    from privgan.reporting.points import load_curve

    p = load_curve(run_dir)[-1]
    row = p.flat()
    sig = p.signal("membership/lira_offline_auc")
    row["lira_auc_ci"] = list(sig.ci) if sig is not None and sig.ci is not None else [math.nan, math.nan]
    row["lira_auc"] = sig.value if sig is not None else math.nan
    return row


def epoch_seconds(run_dir: Path, epochs: int) -> float:
    """Mean training seconds per epoch, attack time (shadow models included) left out (timing.json)."""
    t = json.loads((run_dir / "timing.json").read_text())
    return float(t["train_seconds_without_attacks"]) / epochs


def split_part(out: Path, a: argparse.Namespace) -> tuple[dict, dict]:
    out.mkdir(parents=True, exist_ok=True)
    study = out / "split_study" / "manifest.json"
    if not study.is_file():
        run(["data", "split", *configs(*SPLIT_BASE), "--out", str(study)], out / "split_study.log")
    public = out / "split_public"
    if not (public / "checkpoints" / "last.ckpt").is_file():
        run(["fit", *configs(*SPLIT_BASE, "recipes/split_lfw_public.yaml"),
             f"--data.init_args.exclude_people_of=[{study}]", f"--trainer.default_root_dir={public}",
             f"--trainer.max_epochs={a.public_epochs}"], out / "split_public.log")
    cb = finetune_recipe(out, public / "checkpoints" / "last.ckpt", a.epochs)
    def dp_overlay(unit: str) -> list[str]:  # a YAML file: a null noise_multiplier on the command line is refused
        path = out / f"split_dp_{unit}.yaml"
        path.write_text(yaml.safe_dump({"model": {"init_args": {"dp": {
            "noise_multiplier": None, "target_epsilon": a.target_epsilon, "unit": unit}}}}))
        return ["--config", str(path)]

    # dp_photo_head: DP by photo where only the new head trains on the public features (a DP linear probe: far
    # fewer noised coordinates than the whole network)
    head = finetune_recipe(out, public / "checkpoints" / "last.ckpt", a.epochs, ["net.backbone.head"], "finetune_head_callbacks")
    # _b128: the same at an expected batch of 128 (q ≈ 0.3: fewer, less noisy steps for the same ε) and a larger lr
    big = ["--data.init_args.batch_size=128"]
    variants = {"nonprivate": (cb, ["--model.init_args.dp=null"]), "dp_photo": (cb, dp_overlay("photo")),
                "dp_identity": (cb, dp_overlay("identity")), "dp_photo_head": (head, dp_overlay("photo")),
                "dp_photo_b128": (cb, dp_overlay("photo") + big + ["--model.init_args.lr=0.005"]),
                "dp_photo_head_b128": (head, dp_overlay("photo") + big + ["--model.init_args.lr=0.01"])}
    rows = {}
    for name, (callbacks, extra) in variants.items():
        d = out / f"split_{name}"
        if not finished(d):
            run(["fit", *configs(*SPLIT_BASE, "recipes/split_lfw_dp_finetune.yaml", callbacks), f"--data.init_args.manifest={study}",
                 f"--trainer.default_root_dir={d}", *extra], out / f"split_{name}.log")
        rows[name] = last_point(d)
    n_id = len(json.loads(study.read_text())["identities"])
    r = {
        "n_identities": n_id, "epochs": a.epochs, "target_epsilon": a.target_epsilon, "delta": 1e-5,
        "acc_public_only": 1 / n_id,
        "acc_public_only_note": "chance: without the study's photos no classifier of its people exists",
        "acc_nonprivate_finetune": rows["nonprivate"]["utility"],
        "acc_dp_photo": rows["dp_photo"]["utility"], "eps_photo": rows["dp_photo"]["epsilon"],
        "eps_photo_identity_bound": rows["dp_photo"].get("epsilon_identity", math.nan),
        "acc_dp_identity": rows["dp_identity"]["utility"], "eps_identity": rows["dp_identity"]["epsilon"],
        "lira_auc_nonprivate": rows["nonprivate"]["lira_auc"], "lira_auc_nonprivate_ci": rows["nonprivate"]["lira_auc_ci"],
        "lira_auc_dp": rows["dp_photo"]["lira_auc"], "lira_auc_dp_ci": rows["dp_photo"]["lira_auc_ci"],
        "lira_auc_dp_identity": rows["dp_identity"]["lira_auc"], "lira_auc_dp_identity_ci": rows["dp_identity"]["lira_auc_ci"],
        "acc_dp_photo_head": rows["dp_photo_head"]["utility"], "eps_photo_head": rows["dp_photo_head"]["epsilon"],
        "lira_auc_dp_head": rows["dp_photo_head"]["lira_auc"], "lira_auc_dp_head_ci": rows["dp_photo_head"]["lira_auc_ci"],
        "dp_photo_settings": {name: {"acc": rows[name]["utility"], "eps": rows[name]["epsilon"],
                                     "lira_auc": rows[name]["lira_auc"], "lira_auc_ci": rows[name]["lira_auc_ci"],
                                     "trainable": "head" if "head" in name else "all",
                                     "batch_size": 128 if name.endswith("b128") else 32,
                                     "lr": {"dp_photo_b128": 0.005, "dp_photo_head_b128": 0.01}.get(name, 0.002)}
                              for name in variants if name.startswith("dp_photo")},
    }
    best_photo = max(v["acc"] for v in r["dp_photo_settings"].values())  # the best DP-by-photo fine-tune
    r["target_met"] = {
        "acc_dp_photo_within_10_points": bool(r["acc_nonprivate_finetune"] - best_photo <= 0.10),
        "acc_dp_identity_within_10_points": bool(r["acc_nonprivate_finetune"] - r["acc_dp_identity"] <= 0.10),
        "lira_ci_includes_half": bool(r["lira_auc_dp_ci"][0] <= 0.5 <= r["lira_auc_dp_ci"][1]),
    }
    x, y = epoch_seconds(out / "split_nonprivate", a.epochs), epoch_seconds(out / "split_dp_photo", a.epochs)
    return r, {"epoch_s": x, "epoch_s_dp": y, "ratio": y / x}


# -- face GAN ---------------------------------------------------------------------------------------
def gan_callbacks(out: Path, public_ckpt: Path, epochs: int, name: str) -> Path:
    """A GAN fine-tune's callbacks: InitFrom the public GAN, the identity attack once at the end (2,000 samples), curve, checkpoints."""
    path = out / f"{name}_callbacks.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"max_epochs": epochs, "callbacks": [
        {"class_path": "privgan.callbacks.InitFrom", "init_args": {"checkpoint": str(public_ckpt)}},
        {"class_path": "privgan.callbacks.IdentityMatchAttack",
         "init_args": {"every_n_epochs": epochs, "log_gallery": False,
                       "config": {"n_samples": 2000, "score": "topk_mean", "k": 5, "embedder": "sface", "fd": True,
                                  "n_gallery": 8}}},
        {"class_path": "privgan.callbacks.PrivacyUtilityCurve",
         "init_args": {"utility_key": "utility/fd_face",
                       "keys": ["identity_match/auc", "identity_match/over_auc", "identity_match/verify_share"]}},
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"dirpath": None, "save_last": True, "save_on_train_epoch_end": True}},
    ]}}))
    return path


def gan_row(points_path: Path) -> dict:
    """FD-face, verify shares, identity AUCs with CIs and ε of the last point of a curve (run folder or attack_curve.json)."""
    from privgan.reporting.points import load_curve

    p = load_curve(points_path)[-1]
    row = {"fd": p.value("identity_match/fd_face"), "verify_share": p.value("identity_match/verify_share"),
           "verify_share_real": p.value("identity_match/verify_share_real"), "epsilon": p.epsilon,
           "epsilon_identity": p.epsilon_identity if p.epsilon_identity is not None else math.nan, "epoch": p.epoch}
    for key in ("auc", "over_auc"):
        sig = p.signal(f"identity_match/{key}")
        row[f"identity_{key}"] = sig.value if sig is not None else math.nan
        row[f"identity_{key}_ci"] = list(sig.ci) if sig is not None and sig.ci is not None else [math.nan, math.nan]
    return row


def dp_args(a: argparse.Namespace, n_critic: int, people: int) -> list[str]:
    """The DP fine-tune's overrides: D private by person at the target ε, ``people`` per step, ``n_critic`` D steps per G step."""
    return [f"--model.init_args.dp.target_epsilon={a.target_epsilon}",  # the recipe plans σ from ε (noise_multiplier: null)
            "--model.init_args.dp.unit=identity", f"--model.init_args.dp.identities_per_step={people}",
            f"--model.init_args.n_critic={n_critic}"]


def gan_finetune(out: Path, design: str, study: Path, public_ckpt: Path, name: str, epochs: int,
                 extra: list[str]) -> tuple[list[str], Path]:
    """The command of one fine-tune on a design's study (and its log)."""
    d = out / f"gan_{design}_{name}"
    cb = gan_callbacks(out, public_ckpt, epochs, f"gan_{design}_{name}")
    cmd = ["fit", *configs(*GAN_BASE, *DESIGNS[design], "recipes/gan_lfw_dp_finetune.yaml", cb),
           f"--data.init_args.manifest={study}", f"--trainer.default_root_dir={d}", *extra]
    last = d / "checkpoints" / "last.ckpt"
    if last.is_file():  # interrupted: resume
        cmd.append(f"--ckpt_path={last}")
    return cmd, out / f"gan_{design}_{name}.log"


def gan_part(out: Path, a: argparse.Namespace) -> tuple[dict, dict]:
    out.mkdir(parents=True, exist_ok=True)
    studies = {}
    for design, extra in DESIGNS.items():
        studies[design] = out / f"gan_{design}_study" / "manifest.json"
        if not studies[design].is_file():
            run(["data", "split", *configs(*GAN_BASE, *extra), "--out", str(studies[design])], out / f"gan_{design}_study.log")
    split_study = out / "split_study" / "manifest.json"  # kept clear too: the public GAN is also the split attacks' face prior
    if not split_study.is_file():
        run(["data", "split", *configs(*SPLIT_BASE), "--out", str(split_study)], out / "split_study.log")
    public = out / "gan_public"
    last = public / "checkpoints" / "last.ckpt"
    if not (public / "done").is_file():
        h, m = divmod(int(a.public_minutes), 60)
        run(["fit", *configs(*GAN_BASE, "recipes/gan_lfw_public.yaml"),
             "--data.init_args.exclude_people_of=[" + ",".join(str(p) for p in [*studies.values(), split_study]) + "]",
             f"--trainer.default_root_dir={public}", "--trainer.max_epochs=100000", f"--trainer.max_time=00:{h:02d}:{m:02d}:00",
             *([f"--ckpt_path={last}"] if last.is_file() else [])], out / "gan_public.log")
        (public / "done").write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
    result: dict = {"public_minutes": a.public_minutes, "target_epsilon": a.target_epsilon, "delta": 1e-5}
    # the public GAN alone, attacked on each study: what the private photos add is measured against it
    for design in DESIGNS:
        dst = out / f"gan_{design}_public_only"
        if not (dst / "attack_curve.json").is_file():
            overlay = out / f"gan_{design}_study_data.yaml"
            overlay.write_text(yaml.safe_dump({"data": {"init_args": {"manifest": str(studies[design])}}}))
            run(["attack", "identity_match", "--checkpoint", str(last), *configs(*GAN_BASE, *DESIGNS[design], overlay),
                 "--out", str(dst), "--set", "n_samples=2000", "--set", "fd=true"], out / f"gan_{design}_public_only.log")
    # the DP settings sweep (balanced design), then the best setting on both designs
    grid = [(c, p) for c in a.sweep_critic for p in a.sweep_people]
    if a.sweep:
        jobs = [gan_finetune(out, "balanced", studies["balanced"], last, f"sweep_c{c}_p{p}", a.sweep_epochs, dp_args(a, c, p))
                for c, p in grid if not finished(out / f"gan_balanced_sweep_c{c}_p{p}")]
        run_all(jobs, a.jobs)
    sweep = []
    for c, p in grid:
        d = out / f"gan_balanced_sweep_c{c}_p{p}"
        if finished(d):
            sweep.append({"n_critic": c, "identities_per_step": p, "epochs": a.sweep_epochs, **gan_row(d)})
    result["sweep"] = sweep
    verifying = [r for r in sweep if r["verify_share"] >= 0.5 * r["verify_share_real"]] or sweep
    best = min(verifying, key=lambda r: r["fd"]) if verifying else {"n_critic": a.dp_critic, "identities_per_step": a.dp_people}
    result["dp_setting"] = {"n_critic": best["n_critic"], "identities_per_step": best["identities_per_step"],
                            "chosen_by": "lowest FD-face among sweep settings whose samples verify at half the real "
                                         "photos' rate or more" if sweep else "--dp-critic / --dp-people (no sweep run)"}
    jobs = []
    for design in DESIGNS:
        for name, extra in (("nonprivate", ["--model.init_args.dp=null"]),
                            ("dp", dp_args(a, best["n_critic"], best["identities_per_step"]))):
            if not finished(out / f"gan_{design}_{name}"):
                jobs.append(gan_finetune(out, design, studies[design], last, name, a.gan_epochs, extra))
    run_all(jobs, a.jobs)
    for design in DESIGNS:
        pub, non, dp = (gan_row(out / f"gan_{design}_public_only" / "attack_curve.json"),
                        gan_row(out / f"gan_{design}_nonprivate"), gan_row(out / f"gan_{design}_dp"))
        r = {"fd_public_only": pub["fd"], "verify_share_public_only": pub["verify_share"],
             "fd_nonprivate": non["fd"], "verify_share_nonprivate": non["verify_share"],
             "fd_dp": dp["fd"], "eps": dp["epsilon"], "eps_identity": dp["epsilon_identity"],
             "verify_share_dp": dp["verify_share"], "verify_share_real": dp["verify_share_real"],
             "identity_auc_dp": dp["identity_auc"], "identity_auc_dp_ci": dp["identity_auc_ci"],
             "identity_auc_nonprivate": non["identity_auc"], "identity_auc_nonprivate_ci": non["identity_auc_ci"],
             "epochs": a.gan_epochs}
        if design == "overrepresented":
            r |= {"over_auc_dp": dp["identity_over_auc"], "over_auc_dp_ci": dp["identity_over_auc_ci"],
                  "over_auc_nonprivate": non["identity_over_auc"], "over_auc_nonprivate_ci": non["identity_over_auc_ci"]}
        aucs = [r["identity_auc_dp_ci"]] + ([r["over_auc_dp_ci"]] if design == "overrepresented" else [])
        r["target_met"] = {"eps_identity_le_10": bool(r["eps_identity"] <= 10),
                           "fd_within_1.5x": bool(r["fd_dp"] <= 1.5 * r["fd_nonprivate"]),
                           "verify_share_ge_0.5": bool(r["verify_share_dp"] >= 0.5),
                           "auc_cis_include_half": all(lo <= 0.5 <= hi for lo, hi in aucs)}
        result[design] = r
    x, y = (epoch_seconds(out / "gan_balanced_nonprivate", a.gan_epochs), epoch_seconds(out / "gan_balanced_dp", a.gan_epochs))
    return result, {"epoch_s": x, "epoch_s_dp": y, "ratio": y / x}


def markdown(result: dict) -> str:
    """The tables of docs/results.md: split classifier, face GAN per design, the DP GAN sweep and the cost."""
    out = []
    sp = result.get("split")
    if sp:
        out += ["| split classifier | held-out acc | ε (photo) | ε (person) | LiRA AUC [95 % CI] |", "|---|---|---|---|---|",
                f"| public only (chance) | {fmt(sp['acc_public_only'])} | 0 | 0 | – |",
                f"| non-private fine-tune | {fmt(sp['acc_nonprivate_finetune'])} | ∞ | ∞ | "
                f"{fmt(sp['lira_auc_nonprivate'])} {fmt(sp['lira_auc_nonprivate_ci'])} |",
                f"| DP fine-tune, by photo | {fmt(sp['acc_dp_photo'])} | {fmt(sp['eps_photo'])} | "
                f"{fmt(sp['eps_photo_identity_bound'])} (group bound) | {fmt(sp['lira_auc_dp'])} {fmt(sp['lira_auc_dp_ci'])} |",
                *[f"| DP fine-tune, by photo, {v['trainable']} trainable, batch {v['batch_size']}, lr {v['lr']} | "
                  f"{fmt(v['acc'])} | {fmt(v['eps'])} | – | {fmt(v['lira_auc'])} {fmt(v['lira_auc_ci'])} |"
                  for name, v in sp.get("dp_photo_settings", {}).items() if name != "dp_photo"],
                f"| DP fine-tune, by person | {fmt(sp['acc_dp_identity'])} | – | {fmt(sp['eps_identity'])} | "
                f"{fmt(sp['lira_auc_dp_identity'])} {fmt(sp['lira_auc_dp_identity_ci'])} |", ""]
    gan = result.get("gan") or {}
    for design in DESIGNS:
        r = gan.get(design)
        if not r:
            continue
        over = design == "overrepresented"
        out += [f"| GAN, {design} | FD-face | verify share | ε (person) | identity AUC [95 % CI] |"
                + (" over-rep. AUC [95 % CI] |" if over else ""), "|---|---|---|---|---|" + ("---|" if over else ""),
                f"| public only | {fmt(r['fd_public_only'])} | {fmt(r['verify_share_public_only'])} | 0 | – |" + (" – |" if over else ""),
                f"| non-private fine-tune | {fmt(r['fd_nonprivate'])} | {fmt(r['verify_share_nonprivate'])} | ∞ | "
                f"{fmt(r['identity_auc_nonprivate'])} {fmt(r['identity_auc_nonprivate_ci'])} |"
                + (f" {fmt(r['over_auc_nonprivate'])} {fmt(r['over_auc_nonprivate_ci'])} |" if over else ""),
                f"| DP fine-tune (D, by person) | {fmt(r['fd_dp'])} | {fmt(r['verify_share_dp'])} | {fmt(r['eps_identity'])} | "
                f"{fmt(r['identity_auc_dp'])} {fmt(r['identity_auc_dp_ci'])} |"
                + (f" {fmt(r['over_auc_dp'])} {fmt(r['over_auc_dp_ci'])} |" if over else ""),
                f"\nReal photos verify as another person at {fmt(r['verify_share_real'])} (the verify share's reference level).", ""]
    if gan.get("sweep"):
        out += ["| DP GAN sweep (balanced) | n_critic | people / step | FD-face | verify share | ε (person) |",
                "|---|---|---|---|---|---|"]
        out += [f"| | {r['n_critic']} | {r['identities_per_step']} | {fmt(r['fd'])} | {fmt(r['verify_share'])} | "
                f"{fmt(r['epsilon_identity'])} |" for r in gan["sweep"]]
        out.append("")
    for part, c in (result.get("cost") or {}).items():
        if c:
            out.append(f"Cost, {part}: {fmt(c['epoch_s'])} s per epoch without DP, {fmt(c['epoch_s_dp'])} s with "
                       f"(ratio {fmt(c['ratio'])}).")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "runs" / "bench-private"))
    p.add_argument("--parts", default="split")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--public-epochs", type=int, default=15)
    p.add_argument("--target-epsilon", type=float, default=8.0)
    p.add_argument("--public-minutes", type=float, default=45, help="the public GAN's training time budget")
    p.add_argument("--gan-epochs", type=int, default=60, help="epochs of each GAN fine-tune")
    p.add_argument("--sweep", action="store_true", help="run the DP GAN settings sweep first")
    p.add_argument("--sweep-epochs", type=int, default=30)
    p.add_argument("--sweep-critic", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 4])
    p.add_argument("--sweep-people", type=lambda v: [int(x) for x in v.split(",")], default=[16, 32])
    p.add_argument("--dp-critic", type=int, default=2, help="n_critic of the DP GAN fine-tunes when no sweep ran")
    p.add_argument("--dp-people", type=int, default=16, help="people per step of the DP GAN fine-tunes when no sweep ran")
    p.add_argument("--jobs", type=int, default=2, help="fine-tunes run side by side, one torch thread each")
    a = p.parse_args()
    out = Path(a.out)
    for part, fn in (("split", split_part), ("gan", gan_part)):
        if part in a.parts:
            save_part(part, *fn(out, a))


def save_part(part: str, numbers: dict, cost: dict) -> None:
    """Merge one part's numbers into private.json (read just before writing: the parts may run as separate processes)."""
    res_path = RESULTS / "private.json"
    result = json.loads(res_path.read_text()) if res_path.is_file() else {}
    result[part] = numbers
    result.setdefault("cost", {})[part] = cost
    result.setdefault("split", None)
    result.setdefault("gan", {"balanced": None, "overrepresented": None, "note": "not measured yet (--parts gan)"})
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = res_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1, default=float))
    tmp.replace(res_path)
    (RESULTS / "private.md").write_text(markdown(result))
    print(json.dumps({part: numbers, "cost": cost}, indent=1, default=float))

if __name__ == "__main__":
    main()
