"""The (ε, δ) a fit has spent so far, read from whichever DP part it uses (no other privgan import: any callback may ask)."""

from __future__ import annotations

import math

import lightning as L


def privacy_spent(trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[float, float | None]:
    """(ε, δ) so far: a DP callback's (``DPSGDCallback``), else the module's ``privacy_spent()``, else its logged
    ``dp/epsilon`` and ``dp/delta``; (inf, None) if not private."""
    for cb in trainer.callbacks:
        if getattr(cb, "is_dp_callback", False) and callable(getattr(cb, "privacy_spent", None)):
            return cb.privacy_spent()
    if callable(getattr(pl_module, "privacy_spent", None)):
        return pl_module.privacy_spent()
    eps, delta = trainer.callback_metrics.get("dp/epsilon"), trainer.callback_metrics.get("dp/delta")
    return (float(eps) if eps is not None else math.inf), (float(delta) if delta is not None else None)
