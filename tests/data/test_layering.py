"""The data layer is pure: nothing under privgan/data imports Opacus or W&B, directly or through privgan."""

from __future__ import annotations

import ast
from pathlib import Path

import privgan

SRC = Path(privgan.__file__).parent
FORBIDDEN = ("opacus", "wandb")


def _module_file(name: str) -> Path | None:
    """The source file of a privgan module (package __init__ or module), None when it is not one."""
    rel = Path(*name.split(".")[1:])
    for p in (SRC / rel / "__init__.py", (SRC / rel).with_suffix(".py")):
        if p.is_file():
            return p
    return None


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside functions (``from a import b`` gives a and a.b)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def _reach(name: str) -> set[str]:
    """Modules reachable from a privgan module through privgan's own imports, parent packages included."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        mod = todo.pop()
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):
            parent = ".".join(parts[:i])
            if parent in seen:
                continue
            seen.add(parent)
            f = _module_file(parent) if parts[0] == "privgan" else None
            if f is not None:
                todo += sorted(_imports(f))
    return seen


def test_data_layer_imports_no_opacus_or_wandb():
    for path in sorted((SRC / "data").glob("*.py")):
        name = "privgan.data." + path.stem
        bad = sorted(m for m in _reach(name) if m.split(".")[0] in FORBIDDEN)
        assert not bad, f"{name} reaches {bad}"


def test_the_check_sees_function_level_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from privgan.defences.dp import poisson_loader\n    import wandb\n")
    assert {"privgan.defences.dp", "privgan.defences.dp.poisson_loader", "wandb"} <= _imports(f)
    assert "opacus.data_loader" in _reach("privgan.defences.dp")
