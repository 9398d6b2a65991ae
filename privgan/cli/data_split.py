"""``privgan data split --config RECIPE --out manifest.json``: draw a recipe's split without training.

A study's split must exist before public data can be kept clear of its people:

    privgan data split --config recipes/split_lfw_dp_finetune.yaml --out runs/study/manifest.json
    privgan fit --config recipes/split_lfw_public.yaml   # exclude_people_of: [runs/study/manifest.json]

The recipe's ``data`` section (``class_path`` and ``init_args``, with ``--set KEY=VALUE`` overrides of
init_args) is built and set up (faces aligned, cached) exactly as ``privgan fit`` would, and its
manifest is written; the fit then reads it back with ``--data.init_args.manifest``.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import yaml


def data_section(configs: list[Path], overrides: list[str]) -> tuple[type, dict]:
    """The datamodule class and init_args the recipes name (later recipes override earlier ones, as in
    ``privgan fit``), with ``KEY=VALUE`` overrides (YAML values)."""
    class_path, args = None, {}
    for config in configs:
        try:
            raw = yaml.safe_load(config.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise SystemExit(f"privgan data split: cannot read recipe {str(config)!r}: {e}") from None
        data = (raw or {}).get("data") if isinstance(raw, dict) else None
        if isinstance(data, dict):
            class_path = data.get("class_path", class_path)
            args |= dict(data.get("init_args") or {})
    if class_path is None:
        raise SystemExit(f"privgan data split: no data: class_path section in {', '.join(map(str, configs))}")
    mod, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise SystemExit(f"privgan data split: data.class_path {class_path!r}: {e}") from None
    for o in overrides:
        key, sep, value = o.partition("=")
        if not sep:
            raise SystemExit(f"privgan data split: --set {o!r}: expected KEY=VALUE (a data init_args key)")
        args[key.removeprefix("data.init_args.")] = yaml.safe_load(value)
    return cls, args


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="privgan data split", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, type=Path, action="append",
                   help="a recipe YAML with a data: section (repeat to stack recipes, as privgan fit does)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a data init_args key")
    p.add_argument("--out", required=True, type=Path, help="where to write the manifest JSON")
    a = p.parse_args(argv)
    cls, args = data_section(a.config, a.set)
    try:
        dm = cls(**args)
    except TypeError as e:
        raise SystemExit(f"privgan data split: {a.config}: {e}") from None
    dm.setup("fit")
    out = dm.manifest_.save(a.out)
    print(f"privgan data split: {out}: " + ", ".join(f"{k} {v}" for k, v in dm.manifest_.counts().items()))
    return 0
