"""Is a reconstruction (or a sample) still the same person? Face-embedder re-identification."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from privgan.metrics.intervals import wilson_interval


@dataclass(frozen=True)
class ReidResult:
    """Per-probe identification against a labelled gallery, at a verification threshold."""

    predicted: torch.Tensor
    best_similarity: torch.Tensor
    true_similarity: torch.Tensor
    labels: torch.Tensor
    threshold: float
    n_identities: int

    @property
    def hits(self) -> torch.Tensor:
        """Per probe: identified as the right person *and* above the verification threshold."""
        return (self.predicted == self.labels) & (self.best_similarity >= self.threshold)

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """reid_rate (right person and above threshold) with a Wilson 95% CI, top-1 and chance."""
        hit = self.hits.float()
        n = len(hit)
        lo, hi = wilson_interval(int(hit.sum()), n)
        return {
            f"{prefix}reid_rate": float(hit.mean()),
            f"{prefix}reid_rate_ci_low": lo,
            f"{prefix}reid_rate_ci_high": hi,
            f"{prefix}reid_top1": float((self.predicted == self.labels).float().mean()),
            f"{prefix}reid_top1_chance": 1.0 / self.n_identities,
            f"{prefix}reid_verified": float((self.true_similarity >= self.threshold).float().mean()),
            f"{prefix}reid_cosine_true": float(self.true_similarity.mean()),
        }


def identify(
    probe_emb: torch.Tensor,
    probe_labels: torch.Tensor,
    gallery_emb: torch.Tensor,
    gallery_labels: torch.Tensor,
    *,
    threshold: float,
) -> ReidResult:
    """Match each probe to the identity whose closest gallery photo is most similar."""
    ids = torch.unique(gallery_labels)
    sims = probe_emb @ gallery_emb.T
    per_id = torch.stack([sims[:, gallery_labels == i].max(1).values for i in ids], dim=1)
    best, arg = per_id.max(1)
    pred = ids[arg]
    pos = {int(i): k for k, i in enumerate(ids)}
    true_col = torch.tensor([pos.get(int(y), -1) for y in probe_labels])
    if (true_col < 0).any():
        raise ValueError("every probe's identity must have at least one gallery photo")
    true_sim = per_id.gather(1, true_col.view(-1, 1)).squeeze(1)
    return ReidResult(pred, best, true_sim, probe_labels, float(threshold), len(ids))

