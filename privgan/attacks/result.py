"""Typed attack results: every signal with its chance level, direction and interval; one verdict rule."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

Verdict = Literal["leak", "no leak found", "inconclusive"]


@dataclass(frozen=True)
class Signal:
    """One measured number with the value it would take by chance and its 95% interval.

    ``chance`` is None for numbers without a chance level (PSNR, SSIM): they are reported but
    never decide a verdict. ``higher_is_leak`` gives the direction (True for AUCs and rates).
    """

    value: float
    chance: float | None = None
    ci: tuple[float, float] | None = None
    higher_is_leak: bool = True

    @property
    def decides(self) -> bool:
        """Whether this signal can decide a verdict (it has a chance level and a finite interval)."""
        return self.chance is not None and self.ci is not None and all(math.isfinite(c) for c in self.ci)

    @property
    def above_chance(self) -> bool:
        """The whole interval lies on the leaking side of chance."""
        if not self.decides:
            return False
        return self.ci[0] > self.chance if self.higher_is_leak else self.ci[1] < self.chance

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {"value": self.value, "chance": self.chance, "ci": list(self.ci) if self.ci else None,
                "higher_is_leak": self.higher_is_leak}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Signal:
        """Inverse of ``to_dict``."""
        ci = d.get("ci")
        return cls(float(d["value"]), None if d.get("chance") is None else float(d["chance"]),
                   None if ci is None else (float(ci[0]), float(ci[1])), bool(d.get("higher_is_leak", True)))


@dataclass(frozen=True)
class Gallery:
    """Rows of images (each K x 3 x H x W) with one caption per row: what a person looks at."""

    rows: tuple[Any, ...]
    captions: tuple[str, ...]


@dataclass(frozen=True)
class Result:
    """What one attack run found: its signals, its best sub-attack, whether it converged, its rows.

    ``signals`` hold the headline numbers of the best sub-attack under plain names (``auc``,
    ``reid_top1``) and every sub-attack's under ``<sub>_<name>``. ``values`` are numbers without
    a chance level (counts, thresholds, utilities such as ``fd_face``). ``rows`` are per-item
    records (scores with labels, identities) for tables; ``images`` are named image stacks for
    galleries (kept in memory only). The verdict is "leak" as soon as any signal's interval lies
    above its own chance level; "no leak found" only when every attack converged and some signal
    could decide; "inconclusive" otherwise.
    """

    attack: str
    signals: Mapping[str, Signal]
    headline: str
    best: str = ""
    converged: bool = True
    values: Mapping[str, float] = field(default_factory=dict)
    rows: tuple[Mapping[str, Any], ...] = ()
    images: Mapping[str, Gallery] = field(default_factory=dict, repr=False, compare=False)
    scores: Mapping[str, tuple[Any, Any]] = field(default_factory=dict, repr=False, compare=False)
    knowledge: str = ""
    seconds: float = 0.0
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.headline not in self.signals:
            raise ValueError(f"{self.attack}: headline {self.headline!r} is not among its signals {sorted(self.signals)}")

    @property
    def leaking(self) -> list[str]:
        """Names of the signals whose interval lies above chance."""
        return [k for k, s in self.signals.items() if s.above_chance]

    @property
    def verdict(self) -> Verdict:
        """One rule for every attack: any signal above chance is a leak; silence needs convergence."""
        if self.leaking:
            return "leak"
        if not self.converged or not any(s.decides for s in self.signals.values()):
            return "inconclusive"
        return "no leak found"

    def __getitem__(self, name: str) -> float:
        """The value of a signal or plain value by name."""
        if name in self.signals:
            return self.signals[name].value
        return self.values[name]

    def metrics(self, prefix: str = "privacy/", *, name: str | None = None) -> dict[str, float]:
        """Flat scalars for loggers: ``<prefix><name>_<signal>`` plus ``_ci_low``, ``_ci_high``, ``_chance``.

        ``name`` defaults to the attack's registered name.
        """
        head = f"{prefix}{name or self.attack}_"
        out: dict[str, float] = {}
        for k, s in self.signals.items():
            out[head + k] = s.value
            if s.ci is not None:
                out[f"{head}{k}_ci_low"], out[f"{head}{k}_ci_high"] = s.ci
            if s.chance is not None:
                out[f"{head}{k}_chance"] = s.chance
        out.update({head + k: float(v) for k, v in self.values.items()})
        out[head + "leak"] = float(self.verdict == "leak")
        out[head + "converged"] = float(self.converged)
        out[head + "seconds"] = self.seconds
        return out

    def to_dict(self, *, with_rows: bool = False) -> dict[str, Any]:
        """Plain JSON-able form (images are left out; rows only when asked)."""
        d = {"attack": self.attack, "headline": self.headline, "best": self.best, "converged": self.converged,
             "verdict": self.verdict, "leaking": self.leaking, "knowledge": self.knowledge, "seconds": self.seconds,
             "notes": list(self.notes), "signals": {k: s.to_dict() for k, s in self.signals.items()},
             "values": dict(self.values)}
        if with_rows:
            d["rows"] = [dict(r) for r in self.rows]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Result:
        """Inverse of ``to_dict`` (the stored verdict is recomputed, never trusted)."""
        return cls(attack=d["attack"], signals={k: Signal.from_dict(v) for k, v in d["signals"].items()},
                   headline=d["headline"], best=d.get("best", ""), converged=bool(d.get("converged", True)),
                   values={k: float(v) for k, v in d.get("values", {}).items()},
                   rows=tuple(d.get("rows", ())), knowledge=d.get("knowledge", ""),
                   seconds=float(d.get("seconds", 0.0)), notes=tuple(d.get("notes", ())))


def best_of(candidates: Mapping[str, Mapping[str, Signal]], key: str) -> str:
    """The sub-attack whose ``key`` signal is strongest (in its leaking direction): one "best-of" rule."""
    if not candidates:
        raise ValueError("no sub-attack results to choose from")

    def strength(name: str) -> float:
        s = candidates[name][key]
        if not math.isfinite(s.value):  # a failed sub-attack never wins
            return -math.inf
        return s.value if s.higher_is_leak else -s.value

    return max(candidates, key=strength)


def merge_sub_attacks(candidates: Mapping[str, Mapping[str, Signal]], key: str) -> tuple[str, dict[str, Signal]]:
    """Every sub-attack's signals as ``<sub>_<name>``, plus the best one's (by ``key``) under plain names."""
    best = best_of(candidates, key)
    out = {f"{sub}_{k}": s for sub, sigs in candidates.items() for k, s in sigs.items()}
    out.update(candidates[best])
    return best, out
