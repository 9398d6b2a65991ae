"""The docs hold: the worked example runs as written, and every recipe key is documented."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def worked_example() -> str:
    text = (DOCS / "callbacks.md").read_text()
    m = re.search(r"<!-- worked-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/callbacks.md lost its worked example"
    return m.group(1)


@pytest.mark.lfw
def test_worked_example_runs_as_written(tmp_path, lfw_dir):
    (tmp_path / "example.py").write_text(worked_example())
    env = dict(os.environ, PRIVGAN_DATA=str(lfw_dir.parents[2]), OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "inversion PSNR" in r.stdout and "membership AUC" in r.stdout, r.stdout
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith("step,")
    first = float(lines[0].split("top-1 re-id")[1].split()[0])
    again = float(lines[-2].split("top-1 re-id")[1])
    assert abs(first - again) < 1e-6, (first, again)  # run() without a Trainer gives the callback's number
    for f in ("run/curve.csv", "run/curve.png", "run/inversion/epoch_001_gallery.png", "run/membership/epoch_001_scores.csv",
              "run/membership/epoch_001.json"):
        assert (tmp_path / f).exists(), f


def _classes_in_recipes() -> set[str]:
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("class_path"), str) and node["class_path"].startswith("privgan."):
                found.add(node["class_path"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for f in (ROOT / "recipes").glob("*.yaml"):
        walk(yaml.safe_load(f.read_text()))
    return found


def _init_keys(cls) -> list[str]:
    """A class's recipe keys: its init arguments, its bases' (through **kwargs) and its config dataclass's fields."""
    import dataclasses
    import typing

    keys: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass.__module__.startswith(("lightning", "builtins")):
            continue
        init = vars(klass)["__init__"]
        hints = typing.get_type_hints(init) if klass.__module__.startswith("privgan") else {}
        for p in inspect.signature(init).parameters:
            if p in ("self", "args", "kwargs", "overrides") or p in keys:
                continue
            keys.append(p)
            kind = typing.get_args(hints.get(p)) or (hints.get(p),)
            for k in kind:
                if dataclasses.is_dataclass(k):
                    keys += [f"{p}.{f.name}" for f in dataclasses.fields(k)]
    return keys


def test_every_recipe_key_is_documented():
    """Each init argument (and config field) of every privgan class a recipe names appears in the docs."""
    text = (DOCS / "recipes.md").read_text() + (DOCS / "callbacks.md").read_text() + (DOCS / "monitoring.md").read_text()
    classes = _classes_in_recipes()
    assert len(classes) >= 8, classes
    missing = []
    for path in sorted(classes):
        mod, _, name = path.rpartition(".")
        cls = getattr(importlib.import_module(mod), name)
        for key in _init_keys(cls):
            p = key.rsplit(".", 1)[-1]
            if f"`{p}`" not in text and not re.search(rf"`[^`]*\b{re.escape(p)}\b[^`]*`", text):
                missing.append(f"{name}.{key}")
    assert not missing, f"undocumented recipe keys: {missing}"


def test_recipes_name_classes_by_their_package_path():
    """``privgan.callbacks.IdentityMatchAttack``, not ``privgan.callbacks.identity_match.IdentityMatchAttack``."""
    deep = sorted(c for c in _classes_in_recipes() if c.count(".") != 2)
    assert not deep, f"recipes should name classes by package path: {deep}"
    for path in _classes_in_recipes():
        mod, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(mod), name), path


def test_old_setting_names_fail_with_the_new_name():
    from privgan.callbacks import IdentityMatchAttack, InversionAttack, MembershipAttack

    for cls, old, new in ((InversionAttack, "far", "pair_far"), (MembershipAttack, "reference_models", "shadow_models"),
                          (IdentityMatchAttack, "verify_far", "verify_pair_far")):
        with pytest.raises(TypeError, match=f"'{old}' is now '{new}'"):
            cls(config={old: 1})


def test_shipped_recipes_keep_real_faces_and_names_out_of_wandb():
    """Galleries (real faces) and the member manifest (names, paths) reach W&B only when a user opts in."""
    for f in (ROOT / "recipes").glob("*.yaml"):
        text = f.read_text()
        recipe = yaml.safe_load(text)
        for cb in (recipe.get("trainer") or {}).get("callbacks") or []:
            assert (cb.get("init_args") or {}).get("log_gallery") is not True, f"{f.name}: {cb['class_path']} logs real faces"
            assert not cb["class_path"].endswith("MemberManifestArtifact"), f"{f.name} logs the member manifest"
