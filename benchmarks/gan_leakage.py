"""Face GAN on LFW: leakage over long runs (balanced, over-represented, DP-SGD on D), planted truths, speed.

    python benchmarks/gan_leakage.py train   [--minutes 95] [--out runs/bench-gan] [--only balanced,dp_z1]
    python benchmarks/gan_leakage.py planted [--out benchmarks/results/gan_planted.json]
    python benchmarks/gan_leakage.py table   [--out runs/bench-gan]
    python benchmarks/gan_leakage.py speed                      (on an idle machine)
    python benchmarks/gan_leakage.py release [--run balanced --far 0.001,0.01 --n 10000]

`train` writes one config per setting from recipes/gan_lfw.yaml (+ the setting's overlay), with a
wall-clock budget (trainer.max_time) instead of an epoch count, and runs the settings side by side,
each on one torch thread; a setting whose checkpoint exists resumes. `table` reads every run's
curve.json and identity/epoch_*_scores.csv into benchmarks/results/gan_table.{md,json}.
`planted` runs the identity attack on "generators" that replay training photos with edits, or
faces of people outside the study, on the recipe's own split, and measures samples/s.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results"
BASE = ROOT / "recipes/gan_lfw.yaml"
#: setting -> (overlay recipes, DP noise multiplier or None, attack every N epochs)
SETTINGS: dict[str, tuple[list[str], float | None, int]] = {
    "balanced": ([], None, 80),
    "overrepresented": (["recipes/gan_lfw_overrepresented.yaml"], None, 80),
    "dp_z1": (["recipes/gan_lfw_dp.yaml"], 1.0, 30),
    "dp_z3": (["recipes/gan_lfw_dp.yaml"], 3.0, 30),
}


def merge(base: dict, over: dict) -> dict:
    """Recipe overlay as LightningCLI applies it: mappings merge, everything else is replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def bench_config(name: str, out: Path, minutes: float) -> dict:
    """The recipe for one setting, with the benchmark's time budget, attack schedule and run folder."""
    overlays, z, every = SETTINGS[name]
    cfg = yaml.safe_load(BASE.read_text())
    for o in overlays:
        cfg = merge(cfg, yaml.safe_load((ROOT / o).read_text()))
    h, m = divmod(int(minutes), 60)
    cfg["trainer"].update(max_epochs=100_000, max_time=f"00:{h:02d}:{m:02d}:00", default_root_dir=str(out / name))
    for cb in cfg["trainer"]["callbacks"]:
        args = cb.setdefault("init_args", {})
        if cb["class_path"].endswith(("IdentityMatchAttack", "GanMembershipAttack")):
            args["every_n_epochs"] = every
        if cb["class_path"].endswith("IdentityMatchAttack"):
            args["n_samples"] = 2000
            args["n_gallery"] = 12
    if z is not None:
        cfg["model"]["init_args"]["dp"]["noise_multiplier"] = z
    return cfg


def train(a: argparse.Namespace) -> None:
    out = Path(a.out)
    names = a.only.split(",") if a.only else list(SETTINGS)
    procs = []
    for name in names:
        run = out / name
        run.mkdir(parents=True, exist_ok=True)
        cfg_path = run / "bench_config.yaml"
        cfg_path.write_text(yaml.safe_dump(bench_config(name, out, a.minutes), sort_keys=False))
        cmd = [sys.executable, "-m", "privgan.cli", "fit", "--config", str(cfg_path)]
        last = sorted(run.glob("**/checkpoints/last.ckpt"))
        if last:
            cmd += ["--ckpt_path", str(last[-1])]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE=os.environ.get("WANDB_MODE", "offline"))
        log = open(run / "fit.log", "a")
        print(f"{name}: {' '.join(cmd)}  (log {run / 'fit.log'})", flush=True)
        procs.append((name, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)))
    for name, p in procs:
        print(f"{name}: exit {p.wait()}", flush=True)


# -- table ------------------------------------------------------------------------------------------
COLS = [
    ("epoch", "epoch"),
    ("minutes", "wall min"),
    ("epsilon", "ε (δ=1e-5)"),
    ("utility", "FD-face"),
    ("privacy/identity_match_auc", "identity AUC"),
    ("identity_ci", "95% CI"),
    ("privacy/identity_match_tpr_at_fpr_0.01", "TPR@1%"),
    ("privacy/identity_match_max_auc", "AUC (max)"),
    ("privacy/identity_match_over_auc", "over-rep. AUC"),
    ("over_ranks", "over-rep. ranks (p)"),
    ("privacy/identity_match_samples_matching_members", "samples ≈ member"),
    ("privacy/identity_match_samples_matching_nonmembers", "samples ≈ non-member"),
    ("privacy/gan_membership_logan_auc", "LOGAN AUC"),
    ("privacy/gan_membership_ganleaks_pixel_auc", "GAN-Leaks px AUC"),
    ("privacy/gan_membership_ganleaks_embed_auc", "GAN-Leaks emb AUC"),
    ("privacy/identity_match_verdict", "identity verdict"),
    ("privacy/identity_match_seconds", "identity s"),
    ("privacy/gan_membership_seconds", "LOGAN+GAN-Leaks s"),
]


def overrepresented_ranks(scores_csv: Path, score: str = "topk_mean") -> str:
    """Rank among all identities (1 = most member-like) and p-value of each over-represented identity."""
    rows = list(csv.DictReader(scores_csv.open()))
    order = sorted(rows, key=lambda r: -float(r[score]))
    rank = {r["identity"]: i + 1 for i, r in enumerate(order)}
    over = [r for r in rows if r["group"] == "overrepresented"]
    return ", ".join(f"{rank[r['identity']]} ({float(r['p_value_' + score]):.2f})" for r in sorted(over, key=lambda r: rank[r["identity"]]))


def rows_of(run: Path) -> list[dict]:
    """One row per attack point of a run: curve point + over-represented ranks."""
    from privgan.reporting.points import load_curve

    if not (run / "curve.json").exists():
        return []
    rows = []
    for point in load_curve(run):
        if "identity_match" not in point.results:
            continue
        r = point.flat()
        lo, hi = r.get("privacy/identity_match_auc_ci_low"), r.get("privacy/identity_match_auc_ci_high")
        r["identity_ci"] = f"[{lo:.2f}, {hi:.2f}]" if lo is not None else ""
        scores = run / "identity_match" / f"epoch_{point.epoch:03d}_rows.csv"
        r["over_ranks"] = overrepresented_ranks(scores) if scores.exists() and "privacy/identity_match_over_auc" in r else ""
        r["minutes"] = point.fit_seconds / 60  # wall clock since fit start, attacks included
        rows.append(r)
    return rows


def fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return "∞" if math.isinf(v) else f"{v:.3g}"
    return str(v)


def table(a: argparse.Namespace) -> None:
    out = Path(a.out)
    md = io.StringIO()
    data = {}
    for name in SETTINGS:
        run = out / name
        rows = rows_of(run)
        if not rows:
            continue
        timing = json.loads((run / "timing.json").read_text()) if (run / "timing.json").exists() else {}
        data[name] = {"points": rows, "timing": timing}
        md.write(f"\n### {name}\n\n| " + " | ".join(h for _, h in COLS) + " |\n|" + "---|" * len(COLS) + "\n")
        for r in rows:
            md.write("| " + " | ".join(fmt(r.get(k)) for k, _ in COLS) + " |\n")
        if timing:
            md.write("\ntiming: " + json.dumps(timing) + "\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gan_table.md").write_text(md.getvalue())
    (RESULTS / "gan_table.json").write_text(json.dumps(data, indent=1, default=str))
    print(md.getvalue())


# -- planted truths and speed -----------------------------------------------------------------------
def planted(a: argparse.Namespace) -> None:
    import torch

    from privgan.attacks.identity_match import identity_match_all
    from privgan.faces.embedders import embed_batched
    from privgan.data.gan_faces import GanFaceDataModule
    from privgan.faces.embedders import build_embedder
    from privgan.data.planted import COPY_EDITS, edited_copies, outsider_faces
    from privgan.modules.gan import GAN

    torch.set_num_threads(1)
    cfg = yaml.safe_load(BASE.read_text())
    dm = GanFaceDataModule(**{k: v for k, v in cfg["data"]["init_args"].items()})
    dm.setup("fit")
    emb = build_embedder("sface")
    mx, my = dm.member_references()
    nx, ny = dm.nonmember_references()
    m_emb, n_emb = embed_batched(emb, mx), embed_batched(emb, nx)
    train = dm.train_images()
    result: dict = {"n_member_identities": len(dm.member_identities), "n_nonmember_identities": len(dm.nonmember_identities),
                    "n_train_images": len(train)}

    def attack(samples: torch.Tensor, what: str) -> None:
        t0 = time.perf_counter()
        s_emb = embed_batched(emb, samples)
        result["embed_samples_per_s"] = len(samples) / (time.perf_counter() - t0)
        res = identity_match_all(s_emb, m_emb, my, n_emb, ny, k=5)
        result[what] = {name: {k: r.metrics(n_boot=1000)[k] for k in
                               ("auc", "auc_ci_low", "auc_ci_high", "tpr_at_fpr_0.01", "tpr_at_fpr_0.1", "n_members", "n_nonmembers", "n_samples")}
                        for name, r in res.items()}
        print(what, json.dumps(result[what]["topk_mean"]), flush=True)

    g = torch.Generator().manual_seed(0)
    attack(edited_copies(train, generator=g), "replay_edited_members")
    result["edits"] = list(COPY_EDITS)
    exclude = set(dm.member_identities) | set(dm.nonmember_identities)
    others, names = outsider_faces(dm.root, exclude, n=len(train), size=dm.hparams.image_size, per_identity=2, seed=0)
    result["outsider_identities"] = len(set(names))
    attack(others, "replay_other_people")
    gan = GAN(**{k: v for k, v in cfg["model"]["init_args"].items() if k != "dp"}).eval()
    t0 = time.perf_counter()
    gan.sample(4000, torch.Generator().manual_seed(0))
    result["gan_samples_per_s"] = 4000 / (time.perf_counter() - t0)
    result["threads"] = 1
    out = Path(a.out)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=1))


def speed(a: argparse.Namespace) -> None:
    """Samples/s of the recipe's generator (EMA G) and of SFace embedding, at 1 and 2 threads (run on an idle machine)."""
    import cv2
    import torch

    from privgan.faces.embedders import build_embedder
    from privgan.modules.gan import GAN

    cfg = yaml.safe_load(BASE.read_text())
    gan = GAN(**{k: v for k, v in cfg["model"]["init_args"].items() if k != "dp"}).eval()
    emb = build_embedder("sface")
    out: dict = {"image_size": gan.hparams.image_size, "g_width": gan.hparams.g_width}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        gan.sample(256, torch.Generator().manual_seed(0))  # warm-up
        t0 = time.perf_counter()
        x = gan.sample(4000, torch.Generator().manual_seed(0))
        out[f"sampling_per_s_{threads}_threads"] = 4000 / (time.perf_counter() - t0)
        emb.embed(x[:64])
        t0 = time.perf_counter()
        for i in range(0, 1000, 64):
            emb.embed(x[i : i + 64])
        out[f"sface_embedding_per_s_{threads}_threads"] = 1000 / (time.perf_counter() - t0)
    out["load_average_1min"] = os.getloadavg()[0]
    (RESULTS / "gan_speed.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


def release(a: argparse.Namespace) -> None:
    """`privgan release-check` on a benchmark run's last checkpoint at each FAR, with planted copies and outsiders."""
    run = Path(a.out) / a.run
    ckpt = sorted(run.glob("**/checkpoints/last.ckpt"))
    if not ckpt:
        raise SystemExit(f"no last.ckpt under {run}: run `train` first")
    for far in a.far.split(","):
        dest = Path(a.out) / f"release_{a.run}_far{far}"
        cmd = [sys.executable, "-m", "privgan.cli", "release-check", "--checkpoint", str(ckpt[-1]),
               "--references", str(run / "manifest.json"), "--n", str(a.n), "--far", far, "--plant-copies", str(a.plant),
               "--holdout-outsiders", str(a.holdout), "--out", str(dest)]
        print(" ".join(cmd), flush=True)
        rc = subprocess.call(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2")))
        summary = json.loads((dest / "summary.json").read_text()) | {"exit_code": rc, "run": a.run}
        (RESULTS / f"release_check_{a.run}_far{far}.json").write_text(json.dumps(summary, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--minutes", type=float, default=95)
    t.add_argument("--out", default=str(ROOT / "runs/bench-gan"))
    t.add_argument("--only", default="")
    tb = sub.add_parser("table")
    tb.add_argument("--out", default=str(ROOT / "runs/bench-gan"))
    pl = sub.add_parser("planted")
    pl.add_argument("--out", default=str(RESULTS / "gan_planted.json"))
    sub.add_parser("speed")
    r = sub.add_parser("release")
    r.add_argument("--out", default=str(ROOT / "runs/bench-gan"))
    r.add_argument("--run", default="balanced")
    r.add_argument("--far", default="0.001,0.01")
    r.add_argument("--n", type=int, default=10000)
    r.add_argument("--plant", type=int, default=1000)
    r.add_argument("--holdout", type=int, default=2000)
    a = p.parse_args()
    {"train": train, "table": table, "planted": planted, "speed": speed, "release": release}[a.cmd](a)


if __name__ == "__main__":
    main()
