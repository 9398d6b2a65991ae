"""Attacks register by name (like Opacus's accountants): ``run_attack("membership", target, view)``."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from privgan.attacks.result import Result

F = TypeVar("F", bound=Callable[..., Result])


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: its ``run(target, view, config)``, config class, target kind and view needs."""

    name: str
    run: Callable[[Any, Any, Any], Result]
    config: type
    target: str
    needs: tuple[str, ...]
    summary: str


_ATTACKS: dict[str, AttackSpec] = {}

#: Settings renamed by the attack-protocol redesign, so old recipes fail with the new name.
RENAMED = {"far": "pair_far", "verify_far": "verify_pair_far", "reference_models": "shadow_models"}


def register_attack(name: str, *, config: type, target: str, needs: tuple[str, ...]) -> Callable[[F], F]:
    """Decorator: make ``run(target, view, config) -> Result`` available as ``get_attack(name)``."""

    def deco(fn: F) -> F:
        if name in _ATTACKS:
            raise ValueError(f"an attack named {name!r} is already registered")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _ATTACKS[name] = AttackSpec(name, fn, config, target, tuple(needs), summary)
        return fn

    return deco


def available_attacks() -> list[str]:
    """Names accepted by ``get_attack`` / ``run_attack`` / ``privgan attack``."""
    import privgan.attacks  # noqa: F401 - importing the package registers every attack

    return sorted(_ATTACKS)


def get_attack(name: str) -> AttackSpec:
    """The registered attack ``name``; the error lists what exists."""
    names = available_attacks()
    if name not in _ATTACKS:
        raise KeyError(f"unknown attack {name!r}; registered: {', '.join(names)}")
    return _ATTACKS[name]


def make_config(name: str, config: Any = None, **overrides: Any) -> Any:
    """The attack's config dataclass from None, a dict or an instance, with keyword overrides."""
    cls = get_attack(name).config
    if config is None:
        config = {}
    if not isinstance(config, (dict, cls)):
        raise TypeError(f"{name}: config must be {cls.__name__} or a dict, got {type(config).__name__}")
    if isinstance(config, cls):
        if not overrides:
            return config
        config, overrides = {**dataclasses.asdict(config), **overrides}, {}
    if isinstance(config, dict):
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in set(config) | set(overrides) if k not in fields)
        if unknown:
            moved = "".join(f"; {k!r} is now {RENAMED[k]!r}" for k in unknown if RENAMED.get(k) in fields)
            raise TypeError(f"{name}: unknown config keys {unknown}{moved}; valid: {', '.join(sorted(fields))}")
    return cls(**{**config, **overrides})


def run_attack(name: str, target: Any, view: Any, config: Any = None, *, resources: dict[str, Any] | None = None,
               **overrides: Any) -> Result:
    """Run attack ``name`` once: the same call serves a callback, ``privgan attack`` and a notebook.

    ``config`` is the attack's config (dataclass or dict; keyword ``overrides`` replace fields);
    ``resources`` are attacker-side state an attack may reuse (e.g. LiRA shadow models).
    """
    spec = get_attack(name)
    cfg = make_config(name, config, **overrides)
    view.require(spec.needs, who=f"the {name} attack")
    t0 = time.perf_counter()
    result = spec.run(target, view, cfg, **(resources or {}))
    return dataclasses.replace(result, seconds=time.perf_counter() - t0)
