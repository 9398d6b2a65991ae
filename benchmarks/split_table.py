"""Split classifier on LFW: split depth x activation noise, and DP-SGD, attacked at the end of training.

Runs two `privgan sweep`s (unless their runs exist) and writes benchmarks/results/split_table.md/.json.
    python benchmarks/split_table.py [--out runs/bench-split]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from privgan.reporting.points import load_curve

ROOT = Path(__file__).resolve().parents[1]
BASE = [str(ROOT / "recipes/split_lfw.yaml"), str(ROOT / "benchmarks/split_bench.yaml")]
COLS = [
    ("utility", "held-out acc"),
    ("epsilon", "ε (δ=1e-5)"),
    ("privacy/inversion_whitebox_tv0.05_psnr_db", "WB PSNR λ.05"),
    ("privacy/inversion_whitebox_tv0.3_psnr_db", "WB PSNR λ.3"),
    ("privacy/inversion_whitebox_tv0.3_ssim", "WB SSIM λ.3"),
    ("privacy/inversion_whitebox_best_reid_rate", "WB re-id"),
    ("privacy/inversion_whitebox_best_reid_top1", "WB top-1"),
    ("privacy/inversion_decoder_psnr_db", "dec PSNR"),
    ("privacy/inversion_decoder_ssim", "dec SSIM"),
    ("privacy/inversion_decoder_reid_rate", "dec re-id"),
    ("privacy/inversion_decoder_reid_top1", "dec top-1"),
    ("privacy/inversion_reid_rate_originals", "re-id originals"),
    ("privacy/inversion_verdict", "inversion verdict"),
    ("privacy/membership_verdict", "membership verdict"),
    ("privacy/membership_loss_auc", "MIA loss AUC"),
    ("privacy/membership_lira_offline_auc", "MIA LiRA AUC"),
    ("privacy/membership_tpr_at_fpr_0.01", "MIA TPR@1%"),
    ("privacy/inversion_seconds", "inversion s"),
    ("privacy/membership_seconds", "membership s"),
    ("timing_membership", "membership s (incl. shadow models)"),
]


def sweep(out: Path, grid: list[str], extra: list[str]) -> None:
    cmd = [sys.executable, "-m", "privgan.cli", "sweep"]
    for c in BASE + extra:
        cmd += ["--config", c]
    for g in grid:
        cmd += ["--grid", g]
    cmd += ["--out", str(out), "--skip-done"]
    print(" ".join(cmd), flush=True)
    subprocess.call(cmd, cwd=ROOT)


def rows_of(sweep_dir: Path) -> list[dict]:
    rows = []
    for d in sorted(p for p in sweep_dir.iterdir() if (p / "curve.json").exists()):
        pts = load_curve(d)
        if not pts:
            continue
        r = dict(pts[-1].flat(), run=d.name)
        for m in ("reid_rate", "reid_top1"):
            wb = [v for k, v in r.items() if k.startswith("privacy/inversion_whitebox") and k.endswith(f"_{m}")]
            r[f"privacy/inversion_whitebox_best_{m}"] = max(wb) if wb else math.nan
        t = d / "timing.json"
        if t.exists():
            r["timing"] = json.loads(t.read_text())
            r["timing_membership"] = r["timing"]["attack_seconds"].get("membership", math.nan)
        rows.append(r)
    return rows


def fmt(v) -> str:
    if isinstance(v, float):
        return "∞" if math.isinf(v) else f"{v:.3g}"
    return str(v)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(ROOT / "runs/bench-split"))
    p.add_argument("--splits", default="stage1,stage3")
    p.add_argument("--noise", default="0,0.5,1,2")
    p.add_argument("--dp", default="0.8,1.5", help="DP noise multipliers ('' for none)")
    p.add_argument("--table-only", action="store_true", help="only (re)write the table from finished runs")
    p.add_argument("--name", default="split_table", help="results file name in benchmarks/results/ (.md and .json)")
    a = p.parse_args()
    out = Path(a.out)
    if not a.table_only:
        sweep(out / "noise", [f"model.init_args.split_at={a.splits}", f"model.init_args.activation_noise={a.noise}"], [])
        if a.dp:
            sweep(out / "dp", [f"model.init_args.dp.noise_multiplier={a.dp}"], [str(ROOT / "recipes/split_lfw_dp.yaml")])
    rows = [r for sub in ("noise", "dp") if (out / sub).is_dir() for r in rows_of(out / sub)]
    lines = ["| run | " + " | ".join(c[1] for c in COLS) + " | attack share of fit |", "|" + "---|" * (len(COLS) + 2)]
    for r in rows:
        share = r.get("timing", {}).get("attack_share_of_fit", math.nan)
        lines.append(f"| {r['run']} | " + " | ".join(fmt(r.get(k, math.nan)) for k, _ in COLS) + f" | {fmt(share)} |")
    chance = rows[0].get("privacy/inversion_reid_top1_chance", math.nan) if rows else math.nan
    lines.append("")
    lines.append(f"Identification chance (top-1) {fmt(chance)}; re-id = right identity and cosine above the pair-FAR 1e-3 threshold "
                 f"({fmt(rows[0].get('privacy/inversion_reid_threshold', math.nan)) if rows else '?'}), chance 1e-3. "
                 "The verdict is 'leak' when any signal's 95 % CI lies above its chance level.")
    res = ROOT / "benchmarks/results"
    res.mkdir(parents=True, exist_ok=True)
    (res / f"{a.name}.md").write_text("\n".join(lines) + "\n")
    (res / f"{a.name}.json").write_text(json.dumps(rows, indent=1, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
