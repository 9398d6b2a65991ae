"""Photo-level membership attacks on GANs: LOGAN white-box (Hayes et al. 2019) and GAN-Leaks (Chen et al. 2020).

Both return ``MembershipScores`` (higher = more likely a training photo) over member photos
(label 1) and non-member photos (label 0).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from privgan.attacks.membership import MembershipScores


def _labels(n_members: int, n_nonmembers: int) -> torch.Tensor:
    return torch.cat([torch.ones(n_members, dtype=torch.long), torch.zeros(n_nonmembers, dtype=torch.long)])


@torch.no_grad()
def logan(
    discriminator_scores: Callable[[torch.Tensor], torch.Tensor],
    members: torch.Tensor,
    nonmembers: torch.Tensor,
    *,
    batch_size: int = 256,
) -> MembershipScores:
    """LOGAN white-box: the discriminator's output on each image; an overfit D rates its training photos most real."""
    x = torch.cat([members, nonmembers])
    s = torch.cat([discriminator_scores(x[i : i + batch_size]).reshape(-1).float().cpu() for i in range(0, len(x), batch_size)])
    if len(s) != len(x):
        raise ValueError(f"discriminator_scores returned {len(s)} scores for {len(x)} images (need one per image)")
    return MembershipScores(s, _labels(len(members), len(nonmembers)), "logan")


@torch.no_grad()
def nearest_distance(queries: torch.Tensor, samples: torch.Tensor, *, metric: str = "l2", batch_size: int = 256) -> torch.Tensor:
    """Distance from each query row to its nearest sample row: ``l2`` (Euclidean) or ``cosine`` (1 - cosine)."""
    q, s = queries.flatten(1).float(), samples.flatten(1).float()
    if q.shape[1] != s.shape[1]:
        raise ValueError(f"queries and samples differ in size: {tuple(queries.shape[1:])} vs {tuple(samples.shape[1:])}")
    if len(s) == 0:
        raise ValueError("no generated samples to compare with")
    if metric == "cosine":
        q, s = F.normalize(q, dim=1), F.normalize(s, dim=1)
    elif metric != "l2":
        raise ValueError(f"metric must be 'l2' or 'cosine', got {metric!r}")
    out = []
    for i in range(0, len(q), batch_size):
        if metric == "l2":
            out.append(torch.cdist(q[i : i + batch_size], s).min(1).values)
        else:
            out.append(1.0 - (q[i : i + batch_size] @ s.T).max(1).values)
    return torch.cat(out)


def _match_size(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if images.shape[-2:] == size:
        return images.float()
    return F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False, antialias=True)


def gan_leaks_pixel(samples: torch.Tensor, members: torch.Tensor, nonmembers: torch.Tensor) -> MembershipScores:
    """GAN-Leaks full black-box in pixel space: minus the L2 distance to the nearest generated sample.

    Queries are resized to the samples' resolution when they differ.
    """
    size = tuple(samples.shape[-2:])
    x = torch.cat([_match_size(members, size), _match_size(nonmembers, size)])
    d = nearest_distance(x, samples)
    return MembershipScores(-d, _labels(len(members), len(nonmembers)), "ganleaks_pixel")


def gan_leaks_embedding(sample_emb: torch.Tensor, member_emb: torch.Tensor, nonmember_emb: torch.Tensor) -> MembershipScores:
    """GAN-Leaks full black-box in a face-embedding space: minus (1 - cosine) to the nearest sample embedding."""
    d = nearest_distance(torch.cat([member_emb, nonmember_emb]), sample_emb, metric="cosine")
    return MembershipScores(-d, _labels(len(member_emb), len(nonmember_emb)), "ganleaks_embed")
