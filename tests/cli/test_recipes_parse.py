"""Every shipped recipe, on the base it is written for, parses into a LightningCLI config (keys and types checked)."""

import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
BASE = {"split": "recipes/split_lfw.yaml", "quickstart": None, "gan": "recipes/gan_lfw.yaml"}


def stacks() -> list[list[str]]:
    out = []
    for f in sorted((ROOT / "recipes").glob("*.yaml")):
        kind = f.stem.split("_")[0]
        base = BASE.get(kind)
        out.append([base, f"recipes/{f.name}"] if base and f"recipes/{f.name}" != base else [f"recipes/{f.name}"])
    return out


def test_every_shipped_recipe_parses_on_its_base():
    """One interpreter for all (privgan's CLI prints the composed config and exits 0 for each)."""
    code = (
        "import sys\nfrom privgan.cli import main\n"
        "for stack in " + repr(stacks()) + ":\n"
        "    args = ['fit'] + [a for c in stack for a in ('--config', c)] + ['--print_config']\n"
        "    try:\n        main(args)\n    except SystemExit as e:\n"
        "        if e.code not in (0, None):\n            print('FAILED', stack, e.code, file=sys.stderr); sys.exit(1)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("seed_everything:") == len(stacks()) >= 10
