"""The architecture, checked over the source: attacks are plain code, data is pure, no import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "privgan"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """Absolute names a file imports (relative imports resolved); only module-level ones when asked."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # module level includes `if TYPE_CHECKING`-free blocks such as try/except
        nodes = [n for top in tree.body if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 for n in ast.walk(top)]
    out: set[str] = set()
    pkg = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for n in nodes:
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - n.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in n.names}
    return out


def files(sub: str) -> list[Path]:
    return sorted((PKG / sub).rglob("*.py"))


def reachable(module: str, graph: dict[str, set[str]]) -> set[str]:
    """Every privgan module ``module`` imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        for d in graph.get(todo.pop(), ()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


@pytest.mark.parametrize(("package", "forbidden"), [
    ("attacks", ("lightning", "pytorch_lightning", "wandb", "opacus")),
    ("targets", ("lightning", "pytorch_lightning", "wandb", "opacus")),
    ("metrics", ("lightning", "pytorch_lightning", "wandb", "opacus")),
    ("data", ("wandb", "opacus")),
    ("faces", ("lightning", "wandb", "opacus")),
])
def test_layers_do_not_import_upwards(package, forbidden):
    """Neither the layer's files nor any privgan module they import (transitively) imports the forbidden packages."""
    graph = import_graph()
    mods = {module_name(f): f for f in PKG.rglob("*.py")}
    bad = {}
    for f in files(package):
        for m in {module_name(f)} | reachable(module_name(f), graph):
            hits = sorted(i for i in imports(mods[m]) if i.split(".")[0] in forbidden)
            if hits:
                bad[f"{module_name(f)} -> {m}"] = hits
    assert not bad, bad


def test_lower_layers_do_not_import_higher_privgan_layers():
    """attacks / metrics / faces / targets never reach into callbacks, modules, reporting or the CLI."""
    higher = ("privgan.callbacks", "privgan.modules", "privgan.reporting", "privgan.cli")
    bad = {}
    for package in ("attacks", "metrics", "faces", "targets", "data", "defences", "models"):
        for f in files(package):
            hits = sorted(i for i in imports(f) if i.startswith(higher))
            if hits:
                bad[str(f.relative_to(ROOT))] = hits
    assert not bad, bad


def import_graph(root: Path = PKG) -> dict[str, set[str]]:
    """Module -> privgan modules it imports, at module level or inside functions (edges into packages'
    __init__ are left out: Python runs a package's __init__ before its sub-modules, which is not a cycle)."""
    mods = {module_name(f): f for f in root.rglob("*.py")}
    packages = {m for m, f in mods.items() if f.name == "__init__.py"}
    graph = {}
    for m, f in mods.items():
        deps = {i if i in mods else i.rsplit(".", 1)[0] for i in imports(f) if i.startswith("privgan")}
        graph[m] = {d for d in deps if d in mods and d != m and d not in packages}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    colour: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> list[str] | None:
        colour[m] = 1
        for d in sorted(graph.get(m, ())):
            if colour.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in colour and (found := visit(d, path + [d])):
                return found
        colour[m] = 2
        return None

    for m in sorted(graph):
        if m not in colour and (found := visit(m, [m])):
            return found
    return None


def test_no_import_cycles():
    """Imports between privgan modules form no cycle, lazy ones included; a planted one is found."""
    assert find_cycle(import_graph()) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_attacks_load_without_lightning():
    """A notebook can import every attack without Lightning, W&B or Opacus being imported."""
    code = ("import sys, privgan.attacks, privgan.targets.adapters, privgan.targets.view; "
            "bad = [m for m in ('lightning', 'pytorch_lightning', 'wandb', 'opacus') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
