"""An interrupted `make demo`, rerun, reaches the same frontier as one uninterrupted run.

Runs the demo's sweep command (read from `make -n demo`, only --out changed) three times:
(a) to completion into OUT/full; (b) into OUT/interrupted, with SIGINT sent to its process group
(as Ctrl-C does) after --interrupt-after seconds (default 45 % of (a)), then (c) the same
command again, which skips finished runs and resumes the interrupted one from its last.ckpt.
Compares every run's curve step by step and the two sweep.csv frontiers, and writes
benchmarks/results/demo_resume.json.

    python benchmarks/demo_resume.py [--out runs/bench-resume] [--interrupt-after S] [--reuse-full]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from privgan.reporting.points import load_curve

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "demo_resume.json"


def demo_command(out: Path) -> list[str]:
    """The sweep command `make demo` runs (from `make -n demo`), with ``--out`` set to ``out``."""
    text = subprocess.run(["make", "-n", "-s", "demo"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lines = re.sub(r"\\\n\s*", " ", text).splitlines()
    line = next((x for x in lines if "privgan.cli sweep" in x), None)
    if line is None:
        raise SystemExit(f"demo_resume: no `privgan.cli sweep` line in `make -n demo`:\n{text}")
    cmd = shlex.split(line)
    if "--out" not in cmd:
        raise SystemExit(f"demo_resume: the demo's sweep command has no --out: {line}")
    cmd[cmd.index("--out") + 1] = str(out)
    return cmd


def wait_group_gone(pgid: int, timeout: float = 120.0) -> bool:
    """Wait until no process of group ``pgid`` is left; SIGKILL the stragglers (ours) after ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    return False


def default_sigint() -> None:
    """In the child: SIGINT as a terminal's foreground job has it (a shell's background job, e.g. under nohup, ignores it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(cmd: list[str], log: Path, *, interrupt_after: float | None = None) -> dict[str, Any]:
    """Run ``cmd`` in its own process group (output to ``log``); with ``interrupt_after``, Ctrl-C it then."""
    env = dict(os.environ)
    env.setdefault("WANDB_MODE", "offline")
    env.setdefault("PYTHONUNBUFFERED", "1")
    print(f"$ {shlex.join(cmd)}  > {log}", flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=default_sigint)
        sent = None
        try:
            proc.wait(timeout=interrupt_after)
        except subprocess.TimeoutExpired:
            sent = time.perf_counter() - t0
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
            try:
                proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                raise SystemExit(f"demo_resume: {shlex.join(cmd)} did not stop within 300 s of SIGINT (killed); see {log}")
        rc = proc.returncode
        drained = wait_group_gone(proc.pid)
    out = {"seconds": time.perf_counter() - t0, "exit_code": rc, "group_exited_cleanly": drained}
    if sent is not None:
        out["sigint_at_s"] = sent
    return out


def is_timing(key: str) -> bool:
    """Wall-clock figures, which differ between any two runs."""
    return "seconds" in key


def values_of(point: Any) -> dict[str, Any]:
    """A curve point's flat row without its timings."""
    return {k: v for k, v in point.flat().items() if not is_timing(k)}


def diff_rows(a: dict[str, Any], b: dict[str, Any]) -> tuple[dict[str, float], dict[str, list]]:
    """Absolute differences of numeric entries, and the other entries that differ (or exist in one row only)."""
    diffs: dict[str, float] = {}
    other: dict[str, list] = {}
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        fx, fy = as_float(x), as_float(y)
        if fx is not None and fy is not None:
            both_nan = math.isnan(fx) and math.isnan(fy)
            same_inf = math.isinf(fx) and fx == fy
            diffs[k] = 0.0 if both_nan or same_inf else abs(fx - fy) if not (math.isnan(fx) or math.isnan(fy)) else math.inf
        elif x != y:
            other[k] = [x, y]
    return diffs, other


def as_float(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def compare_run(full: Path, resumed: Path) -> dict[str, Any]:
    """One run folder of each sweep: steps (same, duplicated, lost) and the largest difference of each value."""
    a, b = load_curve(full), load_curve(resumed)
    sa, sb = [p.step for p in a], [p.step for p in b]
    dup = sorted({s for s in sb if sb.count(s) > 1})
    out: dict[str, Any] = {
        "full": {"points": len(a), "steps": sa, "epochs": [p.epoch for p in a]},
        "interrupted": {"points": len(b), "steps": sb, "epochs": [p.epoch for p in b]},
        "steps_match": sa == sb, "duplicated_steps": dup, "lost_steps": sorted(set(sa) - set(sb)),
        "extra_steps": sorted(set(sb) - set(sa)),
    }
    max_diff: dict[str, float] = {}
    text: dict[str, Any] = {}
    pb = {p.step: p for p in b}
    for p in a:
        if p.step not in pb:
            continue
        diffs, other = diff_rows(values_of(p), values_of(pb[p.step]))
        for k, d in diffs.items():
            max_diff[k] = max(max_diff.get(k, 0.0), d)
        text.update({f"step {p.step}: {k}": v for k, v in other.items()})
    out["values_equal"] = out["steps_match"] and not text and all(d == 0 for d in max_diff.values())
    out["max_abs_diff_overall"] = max(max_diff.values(), default=0.0)
    out["max_abs_diff"] = max_diff
    out["other_differences"] = text
    return out


def read_sweep_csv(path: Path) -> dict[str, dict[str, str]]:
    """sweep.csv rows by run name ({} when missing)."""
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["run"]: row for row in csv.DictReader(f)}


def compare_frontier(full: Path, resumed: Path) -> dict[str, Any]:
    """The two sweep.csv tables (the frontier's points), timings left out."""
    a, b = read_sweep_csv(full / "sweep.csv"), read_sweep_csv(resumed / "sweep.csv")
    per_run: dict[str, Any] = {}
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            per_run[name] = {"missing_in": "full" if name not in a else "interrupted"}
            continue
        ra = {k: v for k, v in a[name].items() if not is_timing(k)}
        rb = {k: v for k, v in b[name].items() if not is_timing(k)}
        diffs, other = diff_rows(ra, rb)
        nonzero = {k: d for k, d in diffs.items() if d != 0}
        per_run[name] = {"status": [a[name].get("status"), b[name].get("status")], "same": not nonzero and not other,
                         "max_abs_diff": max(diffs.values(), default=0.0), "differing_values": nonzero, "other_differences": other}
    same = bool(a) and set(a) == set(b) and all(r.get("same") for r in per_run.values())
    return {"same": same, "runs": per_run}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench-resume", help="folder for the two sweeps and their logs (default runs/bench-resume)")
    p.add_argument("--interrupt-after", type=float, default=None,
                   help="seconds after which the second sweep gets SIGINT (default 45%% of the full run's wall time)")
    p.add_argument("--reuse-full", action="store_true",
                   help="keep OUT/full when all its runs finished (its time from OUT/full_seconds.json) instead of rerunning (a)")
    p.add_argument("--result", default=str(RESULT), help=f"result file (default {RESULT.relative_to(ROOT)})")
    a = p.parse_args()
    out = (ROOT / a.out) if not Path(a.out).is_absolute() else Path(a.out)
    full, inter = out / "full", out / "interrupted"
    out.mkdir(parents=True, exist_ok=True)

    timing_file = out / "full_seconds.json"
    if a.reuse_full and timing_file.exists() and (full / "sweep.csv").exists():
        full_run = json.loads(timing_file.read_text())
        print(f"(a) reusing {full} ({full_run['seconds']:.0f} s)", flush=True)
    else:
        shutil.rmtree(full, ignore_errors=True)
        full_run = run(demo_command(full), out / "full.log")
        timing_file.write_text(json.dumps(full_run))
        print(f"(a) full run: {full_run['seconds']:.0f} s, exit {full_run['exit_code']}", flush=True)
    cmd = demo_command(inter)
    after = a.interrupt_after if a.interrupt_after is not None else 0.45 * full_run["seconds"]
    shutil.rmtree(inter, ignore_errors=True)
    first = run(cmd, out / "interrupted.log", interrupt_after=after)
    if "sigint_at_s" not in first:
        print(f"(b) the sweep finished in {first['seconds']:.0f} s, before the interrupt at {after:.0f} s: nothing was "
              "interrupted (the machine got faster?); rerun with a smaller --interrupt-after", flush=True)
    else:
        print(f"(b) SIGINT at {first['sigint_at_s']:.0f} s, exited after {first['seconds']:.0f} s (exit {first['exit_code']})",
              flush=True)
    state = {}
    for d in sorted(x for x in inter.iterdir() if x.is_dir()):
        curve = json.loads((d / "curve.json").read_text()) if (d / "curve.json").exists() else {}
        ckpt = d / "checkpoints" / "last.ckpt"
        epoch = None
        if ckpt.exists():
            import torch

            epoch = int(torch.load(ckpt, map_location="cpu", weights_only=False).get("epoch", -1))
        state[d.name] = {"finished": bool(curve.get("finished")), "points": len(curve.get("points", [])),
                         "last_ckpt_epoch": epoch}
    print(f"    after the interrupt: {state}", flush=True)
    second = run(cmd, out / "resume.log")
    resume_log = (out / "resume.log").read_text()
    print(f"(b) rerun: {second['seconds']:.0f} s, exit {second['exit_code']}", flush=True)

    names = sorted(d.name for d in full.iterdir() if (d / "curve.json").exists())
    runs = {n: compare_run(full / n, inter / n) if (inter / n / "curve.json").exists() else {"missing": True} for n in names}
    frontier = compare_frontier(full, inter)
    result = {
        "command": shlex.join(cmd),
        "interrupt": "SIGINT to the sweep's process group (as Ctrl-C), then the same command again",
        "interrupted": "sigint_at_s" in first,
        "times_s": {"full_run": round(full_run["seconds"], 1), "interrupted_at": round(first.get("sigint_at_s", math.nan), 1),
                    "interrupted_exit_after": round(first["seconds"], 1), "resume": round(second["seconds"], 1),
                    "interrupted_plus_resume": round(first["seconds"] + second["seconds"], 1)},
        "exit_codes": {"full": full_run["exit_code"], "interrupted": first["exit_code"], "resume": second["exit_code"]},
        "state_after_interrupt": state,
        "resumed_from_checkpoint": re.findall(r"resuming from (\S+)", resume_log),
        "skipped_as_done": resume_log.count("already done, skipped"),
        "steps_match": all(r.get("steps_match") for r in runs.values()),
        "curves_equal": all(r.get("values_equal") for r in runs.values()),
        "frontier_same": frontier["same"],
        "runs": runs,
        "frontier": frontier,
    }
    Path(a.result).parent.mkdir(parents=True, exist_ok=True)
    Path(a.result).write_text(json.dumps(result, indent=2, allow_nan=True) + "\n")
    t = result["times_s"]
    print(f"\nfull run {t['full_run']:.0f} s; SIGINT at {t['interrupted_at']:.0f} s; resume {t['resume']:.0f} s "
          f"(resumed from: {', '.join(result['resumed_from_checkpoint']) or 'no checkpoint'})")
    for n, r in runs.items():
        if r.get("missing"):
            print(f"  {n}: no curve in the interrupted sweep")
            continue
        print(f"  {n}: points {r['full']['points']} / {r['interrupted']['points']}, steps match {r['steps_match']}, "
              f"duplicated {r['duplicated_steps']}, lost {r['lost_steps']}, max |diff| {r['max_abs_diff_overall']:.3g}")
    print(f"steps match: {result['steps_match']}; curves equal: {result['curves_equal']}; frontier same: {frontier['same']}")
    print(f"result: {a.result}")
    return 0 if result["interrupted"] and result["steps_match"] and frontier["same"] else 1


if __name__ == "__main__":
    sys.exit(main())
