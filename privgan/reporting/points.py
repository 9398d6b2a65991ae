"""Typed privacy–utility curve points: what sweep, report and plots read (never loose dict keys)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from privgan.attacks.result import Result, Signal

#: The signal each attack shows by default on curves and frontiers, as ``<result name>/<signal>``.
DEFAULT_KEYS = (
    "inversion/reid_top1", "inversion/reid_rate", "inversion/linkage_top1", "inversion/psnr_db", "membership/auc", "membership/tpr_at_fpr_0.01",
    "identity_match/auc", "identity_match/tpr_at_fpr_0.1", "gan_membership/auc",
)


@dataclass(frozen=True)
class CurvePoint:
    """One point of a run's curve: where in training, the utility, ε with δ, and every Result taken there.

    ``results`` are keyed by the callback's name (the attack's registered name unless two
    callbacks of one attack share a trainer). ``delta`` is None when training is not private.
    ``epsilon_identity`` / ``delta_identity``: the guarantee per *person* (the accountant's under
    ``dp.unit: identity``; under ``unit: photo``, group privacy for the person with the most photos),
    None when unknown.
    """

    step: int
    epoch: int
    utility_key: str
    utility: float
    utility_higher_is_better: bool = True
    epsilon: float = math.inf
    delta: float | None = None
    fit_seconds: float = 0.0
    results: Mapping[str, Result] = field(default_factory=dict)
    epsilon_identity: float | None = None
    delta_identity: float | None = None

    def with_result(self, name: str, result: Result) -> CurvePoint:
        """This point with ``result`` added under ``name`` (a newer result of the same name replaces it)."""
        return replace(self, results={**self.results, name: result})

    def signal(self, key: str) -> Signal | None:
        """The Signal at ``<result name>/<signal>``, or None when this point has none."""
        name, _, sig = key.partition("/")
        r = self.results.get(name)
        return r.signals.get(sig) if r is not None else None

    def value(self, key: str) -> float:
        """A signal's or a plain value's number at ``<result name>/<name>`` (NaN when absent)."""
        name, _, k = key.partition("/")
        r = self.results.get(name)
        if r is None:
            return math.nan
        return r.signals[k].value if k in r.signals else float(r.values.get(k, math.nan))

    def verdicts(self) -> dict[str, str]:
        """Each result's verdict by name."""
        return {n: r.verdict for n, r in self.results.items()}

    def flat(self, prefix: str = "privacy/") -> dict[str, Any]:
        """One flat row (for CSV, W&B tables): position, utility, ε, δ and every result's metrics."""
        row: dict[str, Any] = {"step": self.step, "epoch": self.epoch, "utility_key": self.utility_key, "utility": self.utility,
                               "epsilon": self.epsilon, "delta": self.delta if self.delta is not None else math.nan,
                               "fit_seconds": self.fit_seconds}
        if self.epsilon_identity is not None:
            row |= {"epsilon_identity": self.epsilon_identity, "delta_identity": self.delta_identity}
        for name, r in self.results.items():
            row |= r.metrics(prefix, name=name)
            row[f"{prefix}{name}_verdict"] = r.verdict
        return row

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {"step": self.step, "epoch": self.epoch, "utility_key": self.utility_key, "utility": self.utility,
                "utility_higher_is_better": self.utility_higher_is_better, "epsilon": self.epsilon, "delta": self.delta,
                "fit_seconds": self.fit_seconds, "epsilon_identity": self.epsilon_identity,
                "delta_identity": self.delta_identity, "results": {n: r.to_dict() for n, r in self.results.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CurvePoint:
        """Inverse of ``to_dict``."""
        return cls(step=int(d["step"]), epoch=int(d["epoch"]), utility_key=str(d["utility_key"]), utility=float(d["utility"]),
                   utility_higher_is_better=bool(d.get("utility_higher_is_better", True)),
                   epsilon=float(d.get("epsilon", math.inf)), delta=None if d.get("delta") is None else float(d["delta"]),
                   fit_seconds=float(d.get("fit_seconds", 0.0)),
                   results={n: Result.from_dict(r) for n, r in d.get("results", {}).items()},
                   epsilon_identity=None if d.get("epsilon_identity") is None else float(d["epsilon_identity"]),
                   delta_identity=None if d.get("delta_identity") is None else float(d["delta_identity"]))


def save_curve(path: str | os.PathLike, points: Iterable[CurvePoint], **meta: Any) -> Path:
    """``curve.json``: the points (and any metadata such as ``finished``), written atomically."""
    from privgan.reporting.local_files import write_json

    return write_json(path, {**meta, "points": [p.to_dict() for p in points]})


def load_curve(path: str | os.PathLike) -> list[CurvePoint]:
    """The points of a ``curve.json`` (a run folder may be given); a clear error for a file of another kind."""
    p = Path(path)
    if p.is_dir():
        p = p / "curve.json"
    try:
        data = json.loads(p.read_text())
        return [CurvePoint.from_dict(d) for d in data.get("points", [])]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{str(p)!r} is not a privgan curve.json ({type(e).__name__}: {e})") from e
