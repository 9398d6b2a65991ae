"""``privgan sweep`` (one run per grid point, results collected) and ``privgan curve`` (frontier)."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from privgan.reporting.local_files import write_csv, write_json
from privgan.reporting.plots import plot_frontier
from privgan.reporting.points import DEFAULT_KEYS, CurvePoint, load_curve

def yaml_value(v: str) -> Any:
    """A grid value as the recipe would read it (``0.5`` -> 0.5, ``null`` -> None, ``stage1`` -> "stage1")."""
    import yaml

    return yaml.safe_load(v)


def wandb_sweep_config(configs: list[str], grid: dict[str, list[str]], *, metric: str, goal: str, project: str | None,
                       extra: list[str]) -> dict[str, Any]:
    """A W&B sweep (method grid) over the same keys and values: ``wandb sweep FILE`` then ``wandb agent ID``."""
    if goal not in ("minimize", "maximize"):
        raise SystemExit(f"privgan sweep: --wandb-goal must be minimize or maximize, got {goal!r}")
    command = ["${env}", "${interpreter}", "-m", "privgan.cli", "fit"]
    for c in configs:
        command += ["--config", str(Path(c).resolve())]
    command += extra + ["${args}"]
    cfg: dict[str, Any] = {
        "program": "privgan",
        "method": "grid",
        "metric": {"name": metric, "goal": goal},
        "parameters": {k: {"values": [yaml_value(v) for v in vals]} for k, vals in grid.items()},
        "command": command,
    }
    if project:
        cfg["project"] = project
    return cfg


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["model.init_args.x=0,1"]`` -> ``{"model.init_args.x": ["0", "1"]}``; errors name the bad item."""
    grid: dict[str, list[str]] = {}
    for it in items:
        key, sep, vals = it.partition("=")
        if not sep or not key or not vals:
            raise SystemExit(f"privgan sweep: --grid {it!r} must look like KEY=V1,V2,... (e.g. model.init_args.activation_noise=0,1)")
        if key in grid:
            raise SystemExit(f"privgan sweep: --grid key {key!r} given twice")
        grid[key.strip()] = [v.strip() for v in vals.split(",") if v.strip()]
    return grid


def run_name(params: dict[str, str]) -> str:
    """A folder name made of the last part of each key and its value."""
    return "__".join(f"{k.split('.')[-1]}={v}" for k, v in params.items()).replace("/", "_") or "run"


def run_finished(run_dir: Path) -> bool:
    """Whether the run's fit reached its end: ``curve.json`` says ``"finished": true`` (written by PrivacyUtilityCurve)."""
    try:
        data = json.loads((Path(run_dir) / "curve.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("finished") is True


def final_point(run_dir: Path, *, finished_only: bool = False) -> CurvePoint | None:
    """The last point of a run's curve (None if the run wrote none, or, with ``finished_only``, did not finish)."""
    if finished_only and not run_finished(run_dir):
        return None
    pts = load_curve(run_dir) if (run_dir / "curve.json").exists() else []
    return pts[-1] if pts else None


def last_checkpoint(run_dir: Path) -> Path | None:
    """``<run>/checkpoints/last.ckpt`` (where ``privgan fit`` keeps it) when it exists."""
    p = Path(run_dir) / "checkpoints" / "last.ckpt"
    return p if p.is_file() else None


def main(argv: list[str]) -> int:
    """``privgan sweep``: one ``privgan fit`` per grid point, then ``sweep.csv`` and ``frontier.png`` from their final points."""
    p = argparse.ArgumentParser(prog="privgan sweep", description="Run one `privgan fit` per grid point and collect the curve.")
    p.add_argument("--config", "-c", action="append", required=True, help="recipe YAML (repeatable, as for fit)")
    p.add_argument("--grid", action="append", default=[], help="KEY=V1,V2,... (repeatable; the product is run)")
    p.add_argument("--out", default=None, help="sweep folder (default runs/sweep-<recipe name>)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--skip-done", action="store_true",
                   help="skip grid points whose run finished (curve.json says finished: true); resume interrupted ones "
                        "from <run>/checkpoints/last.ckpt")
    p.add_argument("--wandb-sweep", default=None, metavar="FILE",
                   help="write a W&B sweep config for the same grid to FILE and exit (run it with `wandb sweep FILE`)")
    p.add_argument("--wandb-metric", default="privacy/identity_match_auc", help="metric the W&B sweep reports on")
    p.add_argument("--wandb-goal", default="minimize", help="minimize | maximize")
    p.add_argument("--wandb-project", default=None)
    a, extra = p.parse_known_args(argv)
    grid = parse_grid(a.grid)
    if not grid:
        raise SystemExit("privgan sweep: give at least one --grid KEY=V1,V2,...")
    for c in a.config:
        if not Path(c).is_file():
            raise SystemExit(f"privgan sweep: recipe {c!r} does not exist")
    if a.wandb_sweep:
        import yaml

        cfg = wandb_sweep_config(a.config, grid, metric=a.wandb_metric, goal=a.wandb_goal, project=a.wandb_project, extra=extra)
        Path(a.wandb_sweep).parent.mkdir(parents=True, exist_ok=True)
        Path(a.wandb_sweep).write_text(yaml.safe_dump(cfg, sort_keys=False))
        n = math.prod(len(v) for v in grid.values())
        print(f"W&B sweep config ({n} runs): {a.wandb_sweep}\n  wandb sweep {a.wandb_sweep}   # then: wandb agent <sweep id>")
        return 0
    out = Path(a.out or f"runs/sweep-{Path(a.config[-1]).stem}")
    out.mkdir(parents=True, exist_ok=True)
    combos = [dict(zip(grid, vals)) for vals in itertools.product(*grid.values())]
    rows: list[dict[str, Any]] = []
    finals: dict[str, CurvePoint] = {}
    for i, params in enumerate(combos):
        name = run_name(params)
        rdir = out / name
        cmd = [sys.executable, "-m", "privgan.cli", "fit"]
        for c in a.config:
            cmd += ["--config", c]
        cmd += [f"--{k}={v}" for k, v in params.items()] + [f"--trainer.default_root_dir={rdir}"] + extra
        done = run_finished(rdir)
        started = (rdir / "curve.json").exists() or last_checkpoint(rdir) is not None
        note = ""
        if a.skip_done and not done and started:
            if (ckpt := last_checkpoint(rdir)) is not None:  # interrupted: continue it, its curve keeps its points
                cmd.append(f"--ckpt_path={ckpt}")
                note = f"  unfinished: resuming from {ckpt}"
            elif "--overwrite" not in cmd:
                cmd.append("--overwrite")
                note = "  unfinished and no checkpoint to resume from: starting over"
        print(f"[{i + 1}/{len(combos)}] {' '.join(cmd)}", flush=True)
        if a.dry_run:
            continue
        if note:
            print(note, flush=True)
        if a.skip_done and done:
            print("  already done, skipped", flush=True)
        elif not a.skip_done and started and "--overwrite" not in cmd:
            print(f"  {rdir} holds an earlier run: pass --skip-done to keep finished runs and resume the others, "
                  "or --overwrite to start them over; not run", flush=True)
        else:
            rdir.mkdir(parents=True, exist_ok=True)
            write_json(rdir / "sweep_params.json", params)
            env = dict(os.environ, WANDB_NAME=name, WANDB_RUN_GROUP=out.name)
            t0 = time.perf_counter()
            rc = subprocess.call(cmd, env=env)
            print(f"  exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
            if rc != 0:
                print(f"  run {name} failed (exit {rc}); the sweep goes on", flush=True)
        pt = final_point(rdir, finished_only=True)  # the frontier is drawn from finished runs only
        if pt is not None:
            finals[name] = pt
        status = "finished" if pt is not None else "unfinished" if (rdir / "curve.json").exists() else "failed"
        rows.append({"run": name, **params, "status": status, **(pt.flat() if pt else {})})
    if a.dry_run:
        return 0
    write_csv(out / "sweep.csv", rows)
    if finals:
        plot_frontier(finals, DEFAULT_KEYS, out / "frontier.png")
    print(f"sweep results: {out / 'sweep.csv'}; frontier: {out / 'frontier.png'}", flush=True)
    return 0 if len(finals) == len(rows) else 1


def curve_main(argv: list[str]) -> int:
    """``privgan curve``: the frontier plot and table of finished runs' final points."""
    p = argparse.ArgumentParser(prog="privgan curve", description="Plot the privacy–utility frontier of finished runs.")
    p.add_argument("runs", nargs="+", help="run folders (each with curve.json), or sweep folders")
    p.add_argument("--out", default="frontier.png")
    p.add_argument("--keys", nargs="*", default=list(DEFAULT_KEYS), help="<result name>/<signal> keys to plot")
    a = p.parse_args(argv)
    dirs: list[Path] = []
    for r in map(Path, a.runs):
        if (r / "curve.json").exists():
            dirs.append(r)
        elif r.is_dir():
            dirs += sorted(d for d in r.iterdir() if (d / "curve.json").exists())
        else:
            raise SystemExit(f"privgan curve: {str(r)!r} is not a folder")
    finals = {d.name: pt for d in dirs if (pt := final_point(d)) is not None}
    if not finals:
        raise SystemExit("privgan curve: no curve point found in " + ", ".join(a.runs))
    unfinished = [d.name for d in dirs if d.name in finals and not run_finished(d)]
    if unfinished:
        print(f"note: {', '.join(unfinished)} did not finish (their last point is not their final one); "
              "resume them with `privgan fit ... --ckpt_path=last`", flush=True)
    plot_frontier(finals, a.keys, a.out)
    csv_path = write_csv(Path(a.out).with_suffix(".csv"), [{"run": name} | pt.flat() for name, pt in finals.items()])
    for name, pt in finals.items():
        shown = ", ".join(f"{k}={pt.value(k):.3g}" for k in a.keys if not math.isnan(pt.value(k)))
        verdicts = ", ".join(f"{n}: {v}" for n, v in pt.verdicts().items())
        print(f"{name}: utility={pt.utility:.3f} ε={pt.epsilon:.3g} {shown} ({verdicts})")
    print(f"frontier: {a.out} (table {csv_path})")
    return 0
