"""LFW verification benchmark: all 6,000 View 2 pairs for the offline embedders, as JSON and a markdown table.

Run from the repository root:

    python benchmarks/lfw_verification.py [--embedders sface onnx] [--cache-dir DIR] [--full]

Writes benchmarks/results/lfw_<embedder>.json (headline numbers and counts only); with --full the
per-pair scores and labels go to --full-dir (default /tmp/privgan_lfw_full), not into the repo.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from privgan.faces.embedders import build_embedder
from privgan.faces.lfw import LfwResult, evaluate_lfw
from privgan.paths import data_root

RESULTS = Path(__file__).resolve().parent / "results"


def _kwargs(name: str, model_path: str | None) -> dict:
    """Constructor arguments of each benchmarked embedder."""
    if name == "onnx":
        return {"model_path": model_path or str(data_root() / "models" / "mobilefacenet" / "MobileFaceNet.onnx")}
    return {"model_path": model_path} if model_path else {}


def _row(r: LfwResult) -> str:
    """One markdown table row."""
    thr = f"{r.threshold_at_far_1e3:.3f}" if r.threshold_at_far_1e3 != float("inf") else "n/a"
    cached = f", {r.n_images_cached} cached" if r.n_images_cached else ""
    return (
        f"| {r.embedder} | {100 * r.accuracy:.2f} ± {100 * r.accuracy_std:.2f} | {r.auc:.4f} | "
        f"{100 * r.tar_at_far_1e3:.2f} | {thr} | {r.n_pairs} / {r.n_fallback_pairs} | "
        f"{r.align_seconds:.0f} ({r.n_images / r.align_seconds:.1f} img/s{cached}) | "
        f"{r.embed_seconds:.0f} ({r.n_images / r.embed_seconds:.1f} img/s) |"
    )


def main(argv: list[str] | None = None) -> None:
    """Evaluate each embedder on LFW, write the JSON files and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedders", nargs="+", default=["sface", "onnx"])
    ap.add_argument("--model-path", default=None, help="ONNX model for 'onnx' (default: shared MobileFaceNet)")
    ap.add_argument("--max-pairs", type=int, default=None, help="balanced subset, for a quick check")
    ap.add_argument("--cache-dir", type=Path, default=None, help="aligned-crop cache (default: privgan's cache)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--full", action="store_true", help="also write per-pair scores to --full-dir")
    ap.add_argument("--full-dir", type=Path, default=Path("/tmp/privgan_lfw_full"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = []
    for name in args.embedders:
        emb = build_embedder(name, **_kwargs(name, args.model_path if name == "onnx" else None))
        t0 = time.perf_counter()
        r = evaluate_lfw(emb, max_pairs=args.max_pairs, cache_dir=args.cache_dir, progress=True)
        print(r.summary(), f"(total {time.perf_counter() - t0:.0f} s)", flush=True)
        d = r.to_dict(include_scores=False)
        d["environment"] = {
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"lfw_{r.embedder}.json").write_text(json.dumps(d, indent=1) + "\n")
        if args.full:
            print(f"per-pair scores: {r.save(args.full_dir)}")
        rows.append(_row(r))

    print()
    print(
        "| embedder | accuracy % (mean ± std, 10 folds) | AUC | TAR@FAR=1e-3 % | threshold@FAR=1e-3 "
        "| pairs used / fell back | align s (img/s) | embed s (img/s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
