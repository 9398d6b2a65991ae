"""``privgan prior --config RECIPE ...``: train the attacker's face prior once, cached by its recipe, and print its path.

The GAN-prior attacks (``inversion`` with ``prior: PATH``, ``model_inversion``) need a face GAN that
knows no one of the study: a privgan GAN trained on public people, e.g.

    privgan prior --config recipes/gan_lfw.yaml --config recipes/gan_lfw_public.yaml \\
                  --set data.init_args.exclude_people_of=[runs/study/manifest.json]

The recipe must keep a ``ModelCheckpoint`` (``dirpath: null``, ``save_last: true``), as
recipes/gan_lfw.yaml does. The stacked recipes (and ``--set`` overrides, as ``privgan fit`` takes them) are hashed; the run goes to
``$PRIVGAN_CACHE/priors/<hash>/`` and its ``checkpoints/last.ckpt`` is printed. The same recipe again
prints the cached checkpoint without training; an interrupted training resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

import yaml

from privgan.paths import cache_root


def recipe_key(configs: list[Path], sets: list[str]) -> str:
    """A short hash of the recipes' contents (in order) and the overrides: the prior's cache key."""
    h = hashlib.sha256()
    for c in configs:
        try:
            h.update(yaml.safe_dump(yaml.safe_load(c.read_text()), sort_keys=True).encode())
        except (OSError, yaml.YAMLError) as e:
            raise SystemExit(f"privgan prior: cannot read recipe {str(c)!r}: {e}") from None
    for s in sets:
        h.update(s.encode())
    return h.hexdigest()[:16]


def prior_dir(configs: list[Path], sets: list[str]) -> Path:
    """Where the prior of these recipes lives (trained or not)."""
    return cache_root() / "priors" / recipe_key(configs, sets)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="privgan prior", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, type=Path, action="append", help="a GAN recipe (repeat to stack, as privgan fit)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a privgan fit override, e.g. trainer.max_epochs=50 (part of the cache key)")
    a = p.parse_args(argv)
    run = prior_dir(a.config, a.set)
    ckpt, done = run / "checkpoints" / "last.ckpt", run / "done"
    if not done.is_file():
        cmd = [sys.executable, "-m", "privgan.cli", "fit", *[x for c in a.config for x in ("--config", str(c))],
               *[f"--{s}" for s in a.set], f"--trainer.default_root_dir={run}"]
        if ckpt.is_file():
            cmd.append(f"--ckpt_path={ckpt}")
        print(f"privgan prior: training the face prior into {run}", file=sys.stderr, flush=True)
        rc = subprocess.call(cmd)
        if rc:
            raise SystemExit(f"privgan prior: training failed (exit {rc}); rerun the same command to resume")
        if not ckpt.is_file():
            raise SystemExit(f"privgan prior: the fit wrote no {ckpt}: the recipe needs a ModelCheckpoint with dirpath: null "
                             "and save_last: true (recipes/gan_lfw.yaml has one)")
        done.write_text(" ".join(cmd) + "\n")
    print(ckpt)
    return 0
