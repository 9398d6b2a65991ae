"""Stronger attacks on the split benchmark's models (make bench-attacks): face prior, data-free, linkage, model inversion, audit.

    python benchmarks/attacks.py [--split-runs runs/bench-split-verdict/noise] [--prior PATH] [--out runs/bench-attacks]

1. Inversion of the split table's trained models (stage1 / stage3 at σ = 0 and 1; run
   ``benchmarks/split_table.py`` first): ``privgan attack inversion`` on each model's last checkpoint
   with every sub-attack: white-box pixels, the learned decoder, the data-free batch-norm prior
   (where the client keeps BN statistics: privgan's default group norm does not, and the JSON says
   so), the face-GAN prior and identity linkage without pixels.
2. Model inversion of the 16-identity classifier (stage3, σ = 0) with the same face prior.
3. The one-run privacy audit (``PrivacyAudit``) on a non-private and a DP-SGD fit of the same
   classifier.

The face prior is a GAN that saw no one of the split study: ``benchmarks/private.py --parts gan``
trains it (``runs/bench-private/gan_public``; its people exclude the split study's members,
held-out and auxiliary people). Writes ``benchmarks/results/attacks.json``, ``attacks.md`` and
``timing.json`` (seconds per attack). Finished steps are not run again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from table_format import fmt  # benchmarks/ is on the path when a script runs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPLIT_BASE = ["recipes/split_lfw.yaml", "benchmarks/split_bench.yaml"]
RUNS = {"stage1_sigma0": "split_at=stage1__activation_noise=0", "stage3_sigma0": "split_at=stage3__activation_noise=0",
        "stage1_sigma1": "split_at=stage1__activation_noise=1", "stage3_sigma1": "split_at=stage3__activation_noise=1"}
ENV = dict(os.environ, WANDB_MODE=os.environ.get("WANDB_MODE", "offline"))


def privgan(cmd: list[str], log: Path) -> float:
    """Run a privgan command (output to ``log``); seconds taken. Stops the benchmark when it fails."""
    print(" ".join(cmd), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    with open(log, "a") as f:
        rc = subprocess.call([sys.executable, "-m", "privgan.cli", *cmd], cwd=ROOT, env=ENV, stdout=f, stderr=subprocess.STDOUT)
    if rc:
        raise SystemExit(f"failed (exit {rc}): {' '.join(cmd)}; see {log}")
    return time.perf_counter() - t


def configs(*paths: str | Path) -> list[str]:
    return [a for p in paths for a in ("--config", str(p))]


def checkpoint_of(run: Path) -> Path:
    """A trained run's last checkpoint (last.ckpt, else the newest)."""
    ck = run / "checkpoints"
    found = [ck / "last.ckpt"] if (ck / "last.ckpt").is_file() else sorted(ck.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"{run}: no checkpoint; run benchmarks/split_table.py first")
    return found[-1]


def last_result(curve: Path, name: str) -> tuple[dict, dict]:
    """The named Result (as a dict) of the last point of a curve file, and that point's flat row."""
    from privgan.reporting.points import load_curve

    p = load_curve(curve)[-1]
    return p.results[name].to_dict(), p.flat()


def sig(result: dict, key: str) -> tuple[float, list[float]]:
    """A signal's value and CI from a Result dict (NaN when the attack did not produce it)."""
    s = result["signals"].get(key)
    if s is None:
        return math.nan, [math.nan, math.nan]
    return float(s["value"]), list(s["ci"]) if s.get("ci") else [math.nan, math.nan]


def inversion_part(a: argparse.Namespace, out: Path, timing: dict) -> dict:
    table = {}
    for key, run_name in RUNS.items():
        run = Path(a.split_runs) / run_name
        dst = out / key
        if not (dst / "attack_curve.json").is_file():
            sets = ["--set", f"prior={a.prior}", "--set", f"prior_restarts={a.prior_restarts}",
                    "--set", f"prior_steps={a.prior_steps}"]
            timing[f"inversion_{key}"] = privgan(["attack", "inversion", "--checkpoint", str(checkpoint_of(run)),
                                                   *configs(*SPLIT_BASE), "--out", str(dst), *sets], out / f"{key}.log")
        r, _ = last_result(dst / "attack_curve.json", "inversion")
        from privgan.reporting.points import load_curve

        acc = load_curve(run)[-1].utility
        wb = [k[: -len("_reid_rate")] for k in r["signals"] if k.startswith("whitebox_") and k.endswith("_reid_rate")]
        best_wb = max(wb, key=lambda k: sig(r, f"{k}_reid_rate")[0]) if wb else "whitebox"
        row = {"acc": acc}
        for name, sub in (("decoder", "decoder"), ("whitebox", best_wb), ("ganprior", "ganprior"), ("datafree", "datafree")):
            row[f"reid_{name}"], row[f"reid_{name}_ci"] = sig(r, f"{sub}_reid_rate")
            row[f"top1_{name}"], row[f"top1_{name}_ci"] = sig(r, f"{sub}_reid_top1")
        row["linkage_rate"], row["linkage_rate_ci"] = sig(r, "linkage_top1")
        row["top1_chance"] = r["signals"]["reid_top1"]["chance"]
        row["verdict"] = r.get("verdict")
        row["ganprior_seconds_per_face"] = r["values"].get("ganprior_seconds_per_face", math.nan)
        row["notes"] = r.get("notes", [])
        if math.isnan(row["reid_datafree"]):
            row["datafree_note"] = "not applicable: the client (group norm) keeps no batch-norm statistics"
        table[key] = row
    return table


def model_inversion_part(a: argparse.Namespace, out: Path, timing: dict) -> dict:
    run = Path(a.split_runs) / RUNS["stage3_sigma0"]
    dst = out / "model_inversion"
    if not (dst / "attack_curve.json").is_file():
        timing["model_inversion"] = privgan(["attack", "model_inversion", "--checkpoint", str(checkpoint_of(run)),
                                             *configs(*SPLIT_BASE), "--out", str(dst), "--set", f"prior={a.prior}",
                                             "--set", f"restarts={a.mi_restarts}"], out / "model_inversion.log")
    r, _ = last_result(dst / "attack_curve.json", "model_inversion")
    top1, top1_ci = sig(r, "mi_top1")
    top5, top5_ci = sig(r, "mi_top5")
    every, every_ci = sig(r, "mi_top1_restarts")
    return {"mi_top1": top1, "mi_top1_ci": top1_ci, "mi_top5": top5, "mi_top5_ci": top5_ci, "mi_top1_restarts": every,
            "mi_top1_restarts_ci": every_ci, "mi_chance": r["values"]["mi_chance"], "verdict": r.get("verdict"),
            "confidence_mean": r["values"].get("confidence_mean")}


def audit_part(a: argparse.Namespace, out: Path, timing: dict) -> dict:
    overlay = out / "audit_callbacks.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {"max_epochs": a.audit_epochs, "callbacks": [
        {"class_path": "privgan.callbacks.PrivacyAudit", "init_args": {"n_canaries": a.canaries}},
        {"class_path": "privgan.callbacks.PrivacyUtilityCurve"}]}}))
    res = {}
    for name, extra in (("nonprivate", []), ("dp", ["recipes/split_lfw_dp.yaml"])):
        run = out / f"audit_{name}"
        if not (run / "curve.json").is_file() or not json.loads((run / "curve.json").read_text()).get("finished"):
            timing[f"audit_fit_{name}"] = privgan(["fit", *configs(*SPLIT_BASE, *extra, overlay),
                                                   f"--trainer.default_root_dir={run}"], out / f"audit_{name}.log")
        files = sorted((run / "audit").glob("epoch_*.json"))
        r = json.loads(files[-1].read_text())
        acc_eps = r["values"].get("accountant_epsilon", math.inf)
        res[name] = {"eps_lower": r["signals"]["epsilon_lower_bound"]["value"],
                     "accountant_eps": math.inf if acc_eps is None else float(acc_eps),
                     "n_canaries": r["values"].get("n_canaries")}
    return res


def markdown(result: dict) -> str:
    lines = ["| model | acc | decoder re-id | white-box re-id | GAN-prior re-id | GAN-prior top-1 | data-free re-id | "
             "linkage top-1 | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for key, r in result.get("inversion", {}).items():
        lines.append(f"| {key} | {fmt(r['acc'])} | {fmt(r['reid_decoder'])} {fmt(r['reid_decoder_ci'])} | "
                     f"{fmt(r['reid_whitebox'])} | {fmt(r['reid_ganprior'])} {fmt(r['reid_ganprior_ci'])} | "
                     f"{fmt(r['top1_ganprior'])} | {fmt(r['reid_datafree'])} | {fmt(r['linkage_rate'])} "
                     f"{fmt(r['linkage_rate_ci'])} | {r['verdict']} |")
    mi = result.get("model_inversion")
    if mi:
        lines += ["", f"Model inversion of the 16-identity classifier: top-1 {fmt(mi['mi_top1'])} {fmt(mi['mi_top1_ci'])}, "
                      f"top-5 {fmt(mi['mi_top5'])}, every restart {fmt(mi['mi_top1_restarts'])} "
                      f"{fmt(mi['mi_top1_restarts_ci'])}; chance {fmt(mi['mi_chance'])}."]
    au = result.get("audit")
    if au:
        lines += ["", "One-run audit: " + "; ".join(f"{k}: ε ≥ {fmt(v['eps_lower'])} (accountant {fmt(v['accountant_eps'])})"
                                                   for k, v in au.items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split-runs", default=str(ROOT / "runs" / "bench-split-verdict" / "noise"))
    p.add_argument("--prior", default=str(ROOT / "runs" / "bench-private" / "gan_public" / "checkpoints" / "last.ckpt"))
    p.add_argument("--out", default=str(ROOT / "runs" / "bench-attacks"))
    p.add_argument("--parts", default="inversion,model_inversion,audit")
    p.add_argument("--prior-restarts", type=int, default=4)
    p.add_argument("--prior-steps", type=int, default=300)
    p.add_argument("--mi-restarts", type=int, default=8)
    p.add_argument("--audit-epochs", type=int, default=25)
    p.add_argument("--canaries", type=int, default=200)
    a = p.parse_args()
    if not Path(a.prior).is_file():
        raise SystemExit(f"no face prior at {a.prior}: train it with python benchmarks/private.py --parts gan (or pass --prior)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path, timing_path = RESULTS / "attacks.json", RESULTS / "timing.json"
    result = json.loads(res_path.read_text()) if res_path.is_file() else {}
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
    if "inversion" in a.parts:
        result["inversion"] = inversion_part(a, out, timing)
    if "model_inversion" in a.parts:
        result["model_inversion"] = model_inversion_part(a, out, timing)
    if "audit" in a.parts:
        result["audit"] = audit_part(a, out, timing)
    result["prior"] = a.prior
    RESULTS.mkdir(parents=True, exist_ok=True)
    res_path.write_text(json.dumps(result, indent=1, default=float))
    timing_path.write_text(json.dumps(timing, indent=1))
    (RESULTS / "attacks.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
