"""Checks of settings at construction, before any data work, naming the recipe key and the valid range.

An ``owner`` of ``"SplitClassifier"`` names ``model.init_args.<key>``; one ending in ``DataModule`` names ``data.init_args.<key>``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable


def _key(owner: str, name: str) -> str:
    section = "data" if owner.endswith("DataModule") else "model"
    return f"{owner} {name} (recipe key {section}.init_args.{name})"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_int(owner: str, name: str, value: Any, *, minimum: int, allow_none: bool = False) -> None:
    """``value`` is an integer >= ``minimum`` (or None when allowed)."""
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        extra = " or null" if allow_none else ""
        raise ValueError(f"{_key(owner, name)} must be an integer >= {minimum}{extra}, got {value!r}")


def check_number(owner: str, name: str, value: Any, *, minimum: float, inclusive: bool = True,
                 maximum: float | None = None, max_inclusive: bool = False, allow_none: bool = False) -> None:
    """``value`` is a finite number in the given range (or None when allowed)."""
    if value is None and allow_none:
        return
    low_ok = _is_number(value) and math.isfinite(value) and (value >= minimum if inclusive else value > minimum)
    high_ok = maximum is None or (_is_number(value) and (value <= maximum if max_inclusive else value < maximum))
    if not (low_ok and high_ok):
        rng = f"{'>=' if inclusive else '>'} {minimum:g}"
        if maximum is not None:
            rng = f"in {'[' if inclusive else '('}{minimum:g}, {maximum:g}{']' if max_inclusive else ')'}"
        extra = " (or null for none)" if allow_none else ""
        raise ValueError(f"{_key(owner, name)} must be a finite number {rng}{extra}, got {value!r}")


def check_choice(owner: str, name: str, value: Any, choices: Iterable[Any]) -> None:
    """``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        shown = ", ".join("null" if c is None else str(c) for c in choices)
        raise ValueError(f"{_key(owner, name)} must be one of {shown}; got {value!r}")
