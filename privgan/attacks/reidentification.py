"""Is a reconstruction (or a sample) still the same person? Face-embedder re-identification."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from privgan.protocols import IdentityEmbedder


@dataclass(frozen=True)
class ReidResult:
    """Per-probe identification against a labelled gallery, at a verification threshold."""

    predicted: torch.Tensor
    best_similarity: torch.Tensor
    true_similarity: torch.Tensor
    labels: torch.Tensor
    threshold: float
    n_identities: int

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """reid_rate (right person and above threshold) with a Wilson 95% CI, top-1 and chance."""
        hit = ((self.predicted == self.labels) & (self.best_similarity >= self.threshold)).float()
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


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (sane at 0 and n)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


@torch.no_grad()
def embed_batched(embedder: IdentityEmbedder, faces: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Embed faces in batches (N x D unit vectors)."""
    return torch.cat([embedder.embed(faces[i : i + batch_size]) for i in range(0, len(faces), batch_size)])


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


def impostor_threshold(embeddings: torch.Tensor, labels: torch.Tensor, *, far: float = 1e-3) -> float:
    """Cosine threshold whose false-accept rate over all different-identity pairs is ``far``."""
    sims = embeddings @ embeddings.T
    diff = labels.view(-1, 1) != labels.view(1, -1)
    iu = torch.triu(torch.ones_like(diff), diagonal=1)
    imp = sims[diff & iu].double()
    if len(imp) < 1 / far:
        raise ValueError(f"{len(imp)} impostor pairs are too few to set a threshold at FAR {far:g}")
    return float(torch.quantile(imp, 1 - far))
