"""Identity membership attack on generated faces (Webster, Rabin, Simon, Jurie 2021).

A face recogniser embeds generated samples and *reference* photos of candidate identities:
photos of members that the generator never saw, and photos of non-member identities. An
identity whose references resemble many samples, or one sample very closely, is scored as a
member. Scores are per identity (higher = more likely a member); the non-member identities
are the null population, which gives the ROC curve and an empirical p-value per member.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from privgan.attacks.registry import register_attack
from privgan.attacks.result import Gallery, Result, Signal
from privgan.attacks.scoring import roc_signals
from privgan.metrics.roc import membership_metrics

#: FPRs reported for identity membership (TPR at 0.1%, 1% and 10% FPR).
IDENTITY_FPRS = (0.001, 0.01, 0.1)


def _reduce_mean(sims: torch.Tensor) -> torch.Tensor:
    return sims.mean(1)


def _reduce_max(sims: torch.Tensor) -> torch.Tensor:
    return sims.max(1).values


#: How a sample's cosine similarities to one identity's reference photos become one number.
REFERENCE_REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"mean": _reduce_mean, "max": _reduce_max}


def sample_identity_similarity(
    sample_emb: torch.Tensor, ref_emb: torch.Tensor, ref_labels: torch.Tensor, *, reduce: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """S x I similarity of every sample to every identity (over its references), and the I identity labels (sorted)."""
    if reduce not in REFERENCE_REDUCTIONS:
        raise ValueError(f"reduce must be one of {', '.join(REFERENCE_REDUCTIONS)}, got {reduce!r}")
    if ref_emb.ndim != 2 or sample_emb.ndim != 2 or ref_emb.shape[1] != sample_emb.shape[1]:
        raise ValueError(f"embeddings must be N x D with the same D, got samples {tuple(sample_emb.shape)} and references {tuple(ref_emb.shape)}")
    if len(ref_emb) != len(ref_labels):
        raise ValueError(f"{len(ref_emb)} reference embeddings but {len(ref_labels)} labels")
    ids = torch.unique(ref_labels)
    sims = sample_emb.float() @ ref_emb.float().T
    fn = REFERENCE_REDUCTIONS[reduce]
    return torch.stack([fn(sims[:, ref_labels == i]) for i in ids], dim=1), ids


def _score_max(sim: torch.Tensor, k: int, threshold: float) -> torch.Tensor:
    return sim.max(0).values


def _score_topk_mean(sim: torch.Tensor, k: int, threshold: float) -> torch.Tensor:
    return sim.topk(min(k, len(sim)), dim=0).values.mean(0)


def _score_count_above(sim: torch.Tensor, k: int, threshold: float) -> torch.Tensor:
    return (sim > threshold).sum(0).float()


#: Per-identity scores from an S x I sample-identity similarity matrix (higher = member).
IDENTITY_SCORES: dict[str, Callable[[torch.Tensor, int, float], torch.Tensor]] = {
    "max": _score_max,
    "topk_mean": _score_topk_mean,
    "count_above": _score_count_above,
}


def calibrate_threshold(nonmember_sim: torch.Tensor, *, alpha: float = 1.0) -> float:
    """Similarity above which on average ``alpha`` samples fall per non-member identity.

    Calibrated on the non-member population rather than fixed per pair: over thousands of
    sample-reference comparisons a per-pair verification threshold is crossed by chance.
    """
    s = nonmember_sim.shape[0]
    if not 0 < alpha < s:
        raise ValueError(f"alpha must be in (0, n_samples={s}), got {alpha}")
    pooled = nonmember_sim.detach().double().flatten().cpu().numpy()
    return float(np.quantile(pooled, 1.0 - alpha / s))


@dataclass(frozen=True)
class IdentityMatchScores:
    """One score per candidate identity (higher = more likely a member), with labels and names."""

    scores: torch.Tensor
    labels: torch.Tensor
    names: tuple[str, ...]
    score: str
    n_samples: int
    threshold: float = math.nan

    def p_values(self) -> torch.Tensor:
        """Empirical p-value of each member identity, (1 + #{non-member >= score}) / (1 + N_non); NaN for non-members."""
        non = self.scores[self.labels == 0].double()
        p = (1 + (non.view(1, -1) >= self.scores.double().view(-1, 1)).sum(1)) / (1.0 + len(non))
        return torch.where(self.labels == 1, p, torch.full_like(p, math.nan))

    def metrics(self, *, n_boot: int = 500, seed: int = 0, prefix: str = "") -> dict[str, float]:
        """AUC and TPR at 0.1% / 1% / 10% FPR with bootstrap CIs, counts, and member p-value summaries."""
        out = membership_metrics(self.scores, self.labels, fprs=IDENTITY_FPRS, n_boot=n_boot, seed=seed, prefix=prefix)
        p = self.p_values()[self.labels == 1]
        out[f"{prefix}n_identities"] = float(len(self.labels))
        out[f"{prefix}n_samples"] = float(self.n_samples)
        out[f"{prefix}members_p_min"] = float(p.min())
        out[f"{prefix}members_p_median"] = float(p.median())
        out[f"{prefix}members_frac_p_le_0.05"] = float((p <= 0.05).double().mean())
        if not math.isnan(self.threshold):
            out[f"{prefix}threshold"] = self.threshold
        return out

    def rows(self) -> list[dict[str, object]]:
        """One dict per identity (name, member, score, p_value) for CSV files."""
        p = self.p_values()
        return [
            {"identity": n, "member": int(l), self.score: float(s), f"p_value_{self.score}": float(pv)}
            for n, l, s, pv in zip(self.names, self.labels.tolist(), self.scores.tolist(), p.tolist())
        ]


def identity_match_all(
    sample_emb: torch.Tensor,
    member_ref_emb: torch.Tensor,
    member_ref_labels: torch.Tensor,
    nonmember_ref_emb: torch.Tensor,
    nonmember_ref_labels: torch.Tensor,
    *,
    scores: Sequence[str] = tuple(IDENTITY_SCORES),
    k: int = 5,
    alpha: float = 1.0,
    threshold: float | None = None,
    reduce: str = "mean",
    member_names: Sequence[str] | None = None,
    nonmember_names: Sequence[str] | None = None,
) -> dict[str, IdentityMatchScores]:
    """Every requested per-identity score from one similarity computation (members first, then non-members).

    Labels of each reference set index its names (``member_names[label]``); without names,
    identities are called ``member_<label>`` / ``nonmember_<label>``. ``count_above`` uses
    ``threshold`` when given, else the non-member calibration of ``calibrate_threshold``.
    """
    unknown = [s for s in scores if s not in IDENTITY_SCORES]
    if unknown:
        raise ValueError(f"unknown identity scores {unknown}; available: {', '.join(IDENTITY_SCORES)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(sample_emb) == 0:
        raise ValueError("no samples to score")
    sim_m, ids_m = sample_identity_similarity(sample_emb, member_ref_emb, member_ref_labels, reduce=reduce)
    sim_n, ids_n = sample_identity_similarity(sample_emb, nonmember_ref_emb, nonmember_ref_labels, reduce=reduce)
    if len(ids_m) == 0 or len(ids_n) == 0:
        raise ValueError(f"need member and non-member identities, got {len(ids_m)} and {len(ids_n)}")
    names = tuple(
        [member_names[int(i)] if member_names is not None else f"member_{int(i)}" for i in ids_m]
        + [nonmember_names[int(i)] if nonmember_names is not None else f"nonmember_{int(i)}" for i in ids_n]
    )
    labels = torch.cat([torch.ones(len(ids_m), dtype=torch.long), torch.zeros(len(ids_n), dtype=torch.long)])
    sim = torch.cat([sim_m, sim_n], dim=1)
    thr = math.nan
    if "count_above" in scores:
        thr = float(threshold) if threshold is not None else calibrate_threshold(sim_n, alpha=alpha)
    return {
        s: IdentityMatchScores(
            scores=IDENTITY_SCORES[s](sim, k, thr).cpu(),
            labels=labels,
            names=names,
            score=s,
            n_samples=len(sample_emb),
            threshold=thr if s == "count_above" else math.nan,
        )
        for s in scores
    }


def identity_match(
    sample_emb: torch.Tensor,
    member_ref_emb: torch.Tensor,
    member_ref_labels: torch.Tensor,
    nonmember_ref_emb: torch.Tensor,
    nonmember_ref_labels: torch.Tensor,
    *,
    score: str = "topk_mean",
    **kwargs,
) -> IdentityMatchScores:
    """One per-identity score (``max``, ``topk_mean`` or ``count_above``); see ``identity_match_all``."""
    return identity_match_all(
        sample_emb, member_ref_emb, member_ref_labels, nonmember_ref_emb, nonmember_ref_labels, scores=(score,), **kwargs
    )[score]


@dataclass(frozen=True)
class TopMatch:
    """A sample, the identity it matches best, and that identity's closest reference photos."""

    sample_index: int
    identity: int
    name: str
    similarity: float
    reference_indices: tuple[int, ...]
    reference_similarities: tuple[float, ...]


def top_matches(
    sample_emb: torch.Tensor,
    ref_emb: torch.Tensor,
    ref_labels: torch.Tensor,
    *,
    names: Sequence[str] | None = None,
    n: int = 8,
    n_closest: int = 3,
    reduce: str = "mean",
    distinct_identities: bool = True,
) -> list[TopMatch]:
    """The ``n`` samples most similar to some identity, best first, for a gallery.

    ``identity`` is the reference label, ``reference_indices`` index ``ref_emb`` (the
    ``n_closest`` photos of that identity closest to the sample). With ``distinct_identities``
    the best sample of each identity comes first, so one memorised person does not fill the
    gallery; when fewer identities are matched than ``n``, the next best samples fill it up.
    """
    sim, ids = sample_identity_similarity(sample_emb, ref_emb, ref_labels, reduce=reduce)
    best, col = sim.max(1)
    pair = sample_emb.float() @ ref_emb.float().T
    order = torch.argsort(best, descending=True).tolist()
    chosen: list[int] = []
    seen: set[int] = set()
    for s in order:  # best sample of each identity first ...
        ident = int(ids[col[s]])
        if len(chosen) < n and (not distinct_identities or ident not in seen):
            chosen.append(s)
            seen.add(ident)
    taken = set(chosen)
    chosen += [s for s in order if s not in taken][: n - len(chosen)]  # ... then fill up with repeats
    chosen.sort(key=lambda s: -float(best[s]))
    out: list[TopMatch] = []
    for s in chosen:
        ident = int(ids[col[s]])
        refs = (ref_labels == ident).nonzero().squeeze(1)
        closest = torch.argsort(pair[s, refs], descending=True)[:n_closest]
        out.append(
            TopMatch(
                sample_index=s,
                identity=ident,
                name=names[ident] if names is not None else str(ident),
                similarity=float(best[s]),
                reference_indices=tuple(int(refs[o]) for o in closest),
                reference_similarities=tuple(float(pair[s, refs[o]]) for o in closest),
            )
        )
    return out


def share_matching(sample_emb: torch.Tensor, ref_emb: torch.Tensor, threshold: float) -> float:
    """Share of samples whose closest reference photo is above a verification threshold (a face "re-identifies")."""
    if len(sample_emb) == 0 or len(ref_emb) == 0:
        return float("nan")
    best = (sample_emb.float() @ ref_emb.float().T).max(1).values
    return float((best >= threshold).float().mean())


def share_matching_other_people(emb: torch.Tensor, labels: torch.Tensor, threshold: float) -> float:
    """Share of real photos whose closest photo of *another* person is above the threshold: ``verify_share``'s reference level."""
    if len(emb) < 2:
        return float("nan")
    sim = emb.float() @ emb.float().T
    sim[labels.view(-1, 1) == labels.view(1, -1)] = -math.inf
    return float((sim.max(1).values >= threshold).float().mean())


@dataclass(frozen=True)
class IdentityMatchConfig:
    """Settings of the identity-membership attack on generated faces.

    ``score`` (``max``, ``topk_mean`` over the ``k`` best samples, ``count_above`` a threshold
    calibrated so that ``alpha`` samples per non-member exceed it) is the headline; the others
    are reported too. ``verify_pair_far`` sets the verification threshold of the "samples that
    look like someone" shares (pair false-accept rate on impostor pairs of the reference photos).
    ``fd`` adds ``fd_face``, the Fréchet distance between sample and unseen real face embeddings.
    ``p_level``: a note warns when so few non-members are given that no member's p-value can reach it.
    """

    n_samples: int = 1000
    score: str = "topk_mean"
    k: int = 5
    alpha: float = 1.0
    threshold: float | None = None
    reduce: str = "mean"
    embedder: str = "sface"
    embedder_kwargs: dict | None = None
    verify_pair_far: float = 1e-3
    verify_threshold: float | None = None
    fd: bool = True
    n_gallery: int = 8
    n_boot: int = 500
    p_level: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if self.score not in IDENTITY_SCORES:
            raise ValueError(f"score must be one of {', '.join(IDENTITY_SCORES)}, got {self.score!r}")
        if self.n_samples < 2:
            raise ValueError(f"n_samples must be >= 2, got {self.n_samples}")
        if not 0 < self.verify_pair_far < 1:
            raise ValueError(f"verify_pair_far must be in (0, 1), got {self.verify_pair_far}")


def _identity_signals(res: IdentityMatchScores, n_boot: int, seed: int) -> dict[str, Signal]:
    sig, _ = roc_signals(res.scores, res.labels, fprs=IDENTITY_FPRS, n_boot=n_boot, seed=seed)
    return sig


@register_attack("identity_match", config=IdentityMatchConfig, target="gan",
                 needs=("heldout", "nonmembers", "nonmember_references"))
def run_identity_match(target: Any, view: Any, config: IdentityMatchConfig) -> Result:
    """Do a generator's samples look like the people it trained on? (Webster et al. 2021)."""
    from privgan.faces.embedders import get_embedder
    from privgan.metrics.frechet import frechet_distance
    from privgan.metrics.thresholds import impostor_scores, threshold_at_far

    embedder = get_embedder(config.embedder, **(config.embedder_kwargs or {}))
    samples = target.draw(config.n_samples, seed=config.seed)
    emb = target.embeddings(config.n_samples, embedder, seed=config.seed)
    held, non = view.heldout, view.references_for_identity_match()
    m_emb, n_emb = view.embeddings("heldout", embedder), view.embeddings("nonmember_references", embedder)
    results = identity_match_all(emb, m_emb, held.labels, n_emb, non.labels, k=config.k, alpha=config.alpha,
                                 threshold=config.threshold, reduce=config.reduce,
                                 member_names=held.names or None, nonmember_names=non.names or None)
    head = results[config.score]
    subs = {name: _identity_signals(res, config.n_boot, config.seed) for name, res in results.items()}
    signals = {f"{name}_{k}": s for name, sig in subs.items() for k, s in sig.items()}
    signals.update(subs[config.score])
    values: dict[str, float] = {"n_identities": float(len(head.labels)), "n_members": float(head.labels.sum()),
                                "n_samples": float(len(emb))}
    p = head.p_values()[head.labels == 1]
    n_non = int((head.labels == 0).sum())
    values |= {"members_p_min": float(p.min()), "members_p_median": float(p.median()),
               "smallest_possible_p": 1.0 / (1 + n_non)}
    notes = [n for n in (target.saturation_note(config.n_samples, seed=config.seed),) if n]
    if 1.0 / (1 + n_non) > config.p_level:
        notes.append(f"with {n_non} non-member identities the smallest possible p-value is 1/{1 + n_non} = "
                     f"{1 / (1 + n_non):.3g} > {config.p_level:g}: no single member can be significant at that level; "
                     f"use at least {math.ceil(1 / config.p_level)} non-member identities")
    over = set(view.overrepresented)
    if over:
        is_over = torch.tensor([n in over for n in head.names])
        for group, keep in (("over", is_over | (head.labels == 0)), ("regular", ~is_over)):
            sub = IdentityMatchScores(head.scores[keep], head.labels[keep], tuple(n for n, k in zip(head.names, keep) if k),
                                      head.score, head.n_samples, head.threshold)
            if sub.labels.min() != sub.labels.max():
                signals[f"{group}_auc"] = _identity_signals(sub, config.n_boot, config.seed)["auc"]
    threshold = config.verify_threshold
    if threshold is None:
        labels = torch.cat([held.labels, non.labels + int(held.labels.max()) + 1])
        try:
            threshold = threshold_at_far(impostor_scores(torch.cat([m_emb, n_emb]), labels), config.verify_pair_far)
        except ValueError:
            threshold = math.nan
    values["verify_threshold"] = float(threshold)
    if "count_above" in results:
        values["count_above_threshold"] = results["count_above"].threshold
    values["samples_matching_members"] = share_matching(emb, m_emb, threshold)
    values["samples_matching_nonmembers"] = share_matching(emb, n_emb, threshold)
    pool, pool_labels = torch.cat([m_emb, n_emb]), torch.cat([held.labels, non.labels + int(held.labels.max()) + 1])
    values["verify_share"] = share_matching(emb, pool, threshold)  # samples that verify as *some* real person
    values["verify_share_real"] = share_matching_other_people(pool, pool_labels, threshold)  # the same for real faces
    if config.fd:
        real = view.embeddings("unseen", embedder)
        values |= {"fd_face": frechet_distance(emb, real), "fd_face_n_real": float(len(real))}
    counts = view.members.labels.bincount(minlength=len(held.names) or None).tolist() if view.members is not None else None
    pvals = {s: res.p_values() for s, res in results.items()}
    rows = []
    for i, (name, lab) in enumerate(zip(head.names, head.labels.tolist())):
        row: dict[str, Any] = {"identity": name, "member": lab,
                               "group": "nonmember" if not lab else ("overrepresented" if name in over else "member"),
                               "n_train": counts[i] if lab and counts is not None and i < len(counts) else 0}
        for s, res in results.items():
            row[s] = float(res.scores[i])
            row[f"p_value_{s}"] = float(pvals[s][i])
        rows.append(row)
    gallery = _gallery(samples, emb, held, non, m_emb, n_emb, head.names, config)
    return Result(attack="identity_match", signals=signals, headline="auc", best=config.score, values=values,
                  rows=tuple(rows), images={"gallery": gallery} if gallery else {}, notes=tuple(notes),
                  knowledge="black-box samples; other photos of the candidate people")


def _gallery(samples: torch.Tensor, emb: torch.Tensor, held: Any, non: Any, m_emb: torch.Tensor, n_emb: torch.Tensor,
             names: Sequence[str], config: IdentityMatchConfig) -> Gallery | None:
    """The best-matching samples next to the matched identity's closest reference photos."""
    if config.n_gallery <= 0:
        return None
    n_members = int(held.labels.max()) + 1 if len(held) else 0
    size = samples.shape[-1]
    ref_x = torch.cat([held.resized(size).images, non.resized(size).images])
    labels = torch.cat([held.labels, non.labels + n_members])
    matches = top_matches(emb, torch.cat([m_emb, n_emb]), labels, names=list(names), n=config.n_gallery, reduce=config.reduce)
    rows, captions = [], []
    for t in matches:
        rows.append(torch.cat([samples[t.sample_index : t.sample_index + 1], ref_x[list(t.reference_indices)]]))
        kind = "member" if t.identity < n_members else "non-member"
        captions.append(f"{t.name} ({kind}) sim {t.similarity:.2f}; closest refs " + ", ".join(f"{s:.2f}" for s in t.reference_similarities))
    return Gallery(tuple(rows), tuple(captions)) if rows else None
