"""Photo-level membership attacks on GANs: LOGAN white-box (Hayes et al. 2019) and GAN-Leaks (Chen et al. 2020).

Both return ``MembershipScores`` (higher = more likely a training photo) over member photos
(label 1) and non-member photos (label 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from privgan.attacks.membership import MembershipScores
from privgan.attacks.registry import register_attack
from privgan.attacks.result import Result, merge_sub_attacks


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


def gan_leaks_pixel(samples: torch.Tensor, members: torch.Tensor, nonmembers: torch.Tensor) -> MembershipScores:
    """GAN-Leaks full black-box in pixel space: minus the L2 distance to the nearest generated sample.

    Queries are resized to the samples' resolution when they differ.
    """
    from privgan.faces.resize import resize_faces

    size = samples.shape[-1]
    x = torch.cat([resize_faces(members, size), resize_faces(nonmembers, size)])
    d = nearest_distance(x, samples)
    return MembershipScores(-d, _labels(len(members), len(nonmembers)), "ganleaks_pixel")


def gan_leaks_embedding(sample_emb: torch.Tensor, member_emb: torch.Tensor, nonmember_emb: torch.Tensor) -> MembershipScores:
    """GAN-Leaks full black-box in a face-embedding space: minus (1 - cosine) to the nearest sample embedding."""
    d = nearest_distance(torch.cat([member_emb, nonmember_emb]), sample_emb, metric="cosine")
    return MembershipScores(-d, _labels(len(member_emb), len(nonmember_emb)), "ganleaks_embed")


@dataclass(frozen=True)
class GanMembershipConfig:
    """Settings of the photo-level GAN membership attacks (LOGAN, GAN-Leaks in pixels and embeddings).

    Member training photos against photos of non-member identities, equal numbers, at most
    ``max_candidates`` each; GAN-Leaks compares them with ``n_samples`` generated faces.
    """

    n_samples: int = 1000
    max_candidates: int = 500
    logan: bool = True
    ganleaks_pixel: bool = True
    ganleaks_embed: bool = True
    embedder: str = "sface"
    embedder_kwargs: dict | None = None
    n_boot: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.logan or self.ganleaks_pixel or self.ganleaks_embed):
            raise ValueError("gan_membership needs at least one of logan, ganleaks_pixel, ganleaks_embed")


def gan_membership_candidates(view: Any, size: tuple[int, int] | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded equal-size subsets of member training photos and non-member photos (at ``size``)."""
    mem, non = view.members, view.nonmembers
    if size is not None:
        mem, non = mem.resized(size[0]), non.resized(size[0])
    g = torch.Generator().manual_seed(seed)
    n = min(len(mem), len(non))
    return mem.images[torch.randperm(len(mem), generator=g)[:n]], non.images[torch.randperm(len(non), generator=g)[:n]]


@register_attack("gan_membership", config=GanMembershipConfig, target="gan", needs=("members", "nonmembers"))
def run_gan_membership(target: Any, view: Any, config: GanMembershipConfig) -> Result:
    """Was this exact photo in the GAN's training set? LOGAN (Hayes et al. 2019) and GAN-Leaks (Chen et al. 2020)."""
    from privgan.attacks.scoring import roc_signals

    need_samples = config.ganleaks_pixel or config.ganleaks_embed
    samples = target.draw(config.n_samples, seed=config.seed) if need_samples else None
    size = tuple(samples.shape[-2:]) if samples is not None else None
    mem, non = gan_membership_candidates(view, size, config.seed)
    mem, non = mem[: config.max_candidates], non[: config.max_candidates]
    sub: dict[str, MembershipScores] = {}
    notes = [n for n in (target.saturation_note(config.n_samples, seed=config.seed) if need_samples else None,) if n]
    if config.logan:
        if target.discriminator_scores is not None:
            sub["logan"] = logan(target.discriminator_scores, mem, non)
        else:
            notes.append("LOGAN skipped: the target has no discriminator (give discriminator_attr)")
    if config.ganleaks_pixel:
        sub["ganleaks_pixel"] = gan_leaks_pixel(samples, mem, non)
    if config.ganleaks_embed:
        from privgan.faces.embedders import embed_batched, get_embedder

        embedder = get_embedder(config.embedder, **(config.embedder_kwargs or {}))
        sub["ganleaks_embed"] = gan_leaks_embedding(target.embeddings(config.n_samples, embedder, seed=config.seed),
                                                    embed_batched(embedder, mem), embed_batched(embedder, non))
    if not sub:
        raise TypeError("no GAN membership attack could run: " + "; ".join(notes))
    signals, counts = {}, {}
    for name, r in sub.items():
        signals[name], counts = roc_signals(r.scores, r.labels, n_boot=config.n_boot, seed=config.seed)
    best, merged = merge_sub_attacks(signals, "auc")
    return Result(attack="gan_membership", signals=merged, headline="auc", best=best, values=counts, notes=tuple(notes),
                  scores={k: (r.scores, r.labels) for k, r in sub.items()},
                  knowledge="black-box samples" + ("; white-box discriminator" if "logan" in sub else ""))
