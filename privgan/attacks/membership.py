"""Membership inference on classifiers: loss threshold and offline likelihood-ratio (LiRA) attacks.

``run_membership`` is the registered attack ``"membership"``: was this exact photo in the
training set? Member photos against held-out photos of the same people, in equal numbers.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from privgan.attacks.registry import register_attack
from privgan.attacks.result import Result, merge_sub_attacks
from privgan.attacks.scoring import roc_signals
from privgan.metrics.roc import membership_metrics


@dataclass(frozen=True)
class MembershipScores:
    """Scores where higher always means "more likely a member", with 0/1 membership labels."""

    scores: torch.Tensor
    labels: torch.Tensor
    attack: str

    def metrics(self, *, n_boot: int = 500, seed: int = 0) -> dict[str, float]:
        """AUC and TPR at 0.1% / 1% FPR with bootstrap CIs, and the counts."""
        return membership_metrics(self.scores, self.labels, n_boot=n_boot, seed=seed)


@torch.no_grad()
def predict_logits(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Logits of ``model`` over ``images`` in eval mode, batched (training mode restored)."""
    was = getattr(model, "training", None)
    if isinstance(model, nn.Module):
        model.eval()
    try:
        return torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    finally:
        if isinstance(model, nn.Module) and was:
            model.train()


def logit_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Stable log(p_y / (1 - p_y)): the per-example statistic LiRA models as Gaussian."""
    logp = F.log_softmax(logits.double(), dim=1)
    lp_y = logp.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logp.clone()
    others.scatter_(1, labels.view(-1, 1), -torch.inf)
    return (lp_y - torch.logsumexp(others, dim=1)).float()


def loss_attack(logits: torch.Tensor, labels: torch.Tensor, membership: torch.Tensor) -> MembershipScores:
    """Yeom et al. (2018): members have lower loss, so the score is the negative cross-entropy."""
    score = -F.cross_entropy(logits.float(), labels, reduction="none")
    return MembershipScores(score, membership.long(), "loss")


def offline_lira(
    target_conf: torch.Tensor,
    reference_conf: torch.Tensor,
    reference_in: torch.Tensor,
    membership: torch.Tensor,
    *,
    fixed_variance: bool = True,
) -> MembershipScores:
    """Carlini et al. (2022) offline LiRA: how far the target's confidence sits above OUT references.

    ``reference_conf`` is K x N logit-confidences of reference models, ``reference_in`` K x N
    (True where the example was in that model's training set; those entries are ignored). The
    score is (φ_target - μ_out) / σ_out, with one global σ when ``fixed_variance`` (robust for
    few references). Examples with no OUT reference fall back to the mean over all OUT entries.
    """
    if reference_conf.shape != reference_in.shape or reference_conf.shape[1] != target_conf.shape[0]:
        raise ValueError(f"reference_conf {tuple(reference_conf.shape)} / reference_in must be K x N with N = {target_conf.shape[0]}")
    out = ~reference_in.bool()
    n_out = out.sum(0)
    if out.sum() < 2:
        raise ValueError("offline LiRA needs OUT reference observations; every example was IN every reference")
    mu = torch.where(out, reference_conf, 0).sum(0) / n_out.clamp_min(1)
    mu = torch.where(n_out > 0, mu, reference_conf[out].mean())
    resid = (reference_conf - mu)[out]
    if fixed_variance or n_out.min() < 2:
        sigma = resid.std().clamp_min(1e-6).expand_as(mu)
    else:
        var = torch.where(out, (reference_conf - mu) ** 2, 0).sum(0) / (n_out - 1)
        sigma = var.sqrt().clamp_min(1e-6)
    return MembershipScores((target_conf - mu) / sigma, membership.long(), "lira_offline")


class ShadowModels:
    """Shadow models trained, like the target, on seeded halves of the candidate pool.

    Models come in complementary pairs, so every candidate is OUT for exactly half of them.
    ``train(epochs)`` continues training, so references can keep pace with a running target.
    """

    def __init__(
        self,
        factory: Callable[[], nn.Module],
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        k: int = 2,
        lr: float = 1e-3,
        weight_decay: float = 5e-4,
        batch_size: int = 64,
        augment_flip: bool = True,
        seed: int = 0,
    ) -> None:
        if k < 2 or k % 2:
            raise ValueError(f"reference models come in complementary pairs: k must be even and >= 2, got {k}")
        self.factory, self.images, self.labels = factory, images, labels
        self.k, self.lr, self.weight_decay, self.batch_size, self.augment_flip = k, lr, weight_decay, batch_size, augment_flip
        g = torch.Generator().manual_seed(seed)
        masks = []
        for _ in range(k // 2):
            m = torch.zeros(len(images), dtype=torch.bool)
            m[torch.randperm(len(images), generator=g)[: len(images) // 2]] = True
            masks += [m, ~m]
        self.in_mask = torch.stack(masks)
        with torch.random.fork_rng():  # seeded initialisation that leaves the caller's RNG alone
            torch.manual_seed(seed)
            self.models_ = [factory() for _ in range(k)]
        self.optimizers_ = [torch.optim.Adam(m.parameters(), lr=lr, weight_decay=weight_decay) for m in self.models_]
        self.epochs_ = 0
        # one generator per model: a model's batches do not depend on which others are trained, or where (DDP ranks)
        self._gens = [torch.Generator().manual_seed(seed + 1 + 1000 * j) for j in range(k)]

    def train(self, epochs: int = 1, *, only: Sequence[int] | None = None) -> None:
        """Train every reference model (or those in ``only``: a DDP rank's share) ``epochs`` more epochs on its half."""
        chosen = range(self.k) if only is None else only
        for _ in range(epochs):
            for j in chosen:
                self._train_one_epoch(j)
            self.epochs_ += 1

    def _train_one_epoch(self, j: int) -> None:
        model, opt, mask, gen = self.models_[j], self.optimizers_[j], self.in_mask[j], self._gens[j]
        model.train()
        idx = mask.nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        for i in range(0, len(idx), self.batch_size):
            b = idx[i : i + self.batch_size]
            x, y = self.images[b], self.labels[b]
            if self.augment_flip:
                flip = torch.rand(len(b), generator=gen) < 0.5
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

    def model_state(self, j: int) -> dict:
        """Model ``j``'s weights, optimiser and batch generator (what a DDP rank sends rank 0 after training it)."""
        return {"model": self.models_[j].state_dict(), "optimizer": self.optimizers_[j].state_dict(),
                "gen": self._gens[j].get_state()}

    def load_model_state(self, j: int, state: dict) -> None:
        """Model ``j`` as another process trained it (``model_state``)."""
        state = copy.deepcopy(state)
        self.models_[j].load_state_dict(state["model"])
        self.optimizers_[j].load_state_dict(state["optimizer"])
        self._gens[j].set_state(state["gen"])

    def confidences(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """K x N logit-confidences of every reference model on (images, labels)."""
        return torch.stack([logit_confidence(predict_logits(m, images), labels) for m in self.models_])

    def state_dict(self) -> dict:
        """Model and optimiser states, for resuming alongside the target."""
        return {
            "epochs": self.epochs_,
            "models": [m.state_dict() for m in self.models_],
            "optimizers": [o.state_dict() for o in self.optimizers_],
            "in_mask": self.in_mask,
            "gens": [g.get_state() for g in self._gens],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` saved (deep-copied: no tensor is shared with the source)."""
        state = copy.deepcopy(state)
        self.epochs_ = state["epochs"]
        self.in_mask = state["in_mask"]
        for m, s in zip(self.models_, state["models"]):
            m.load_state_dict(s)
        for o, s in zip(self.optimizers_, state["optimizers"]):
            o.load_state_dict(s)
        # checkpoints before per-model generators kept one shared generator: each model continues from it
        for g, st in zip(self._gens, state.get("gens") or [state["gen"]] * len(self._gens)):
            g.set_state(st)


def fresh_copy(model: nn.Module) -> nn.Module:
    """Deep copy of ``model`` with every parameter re-initialised (a reference architecture)."""
    m = copy.deepcopy(model)
    for mod in m.modules():
        if hasattr(mod, "reset_parameters") and mod is not m:
            mod.reset_parameters()
    return m


@dataclass(frozen=True)
class MembershipConfig:
    """Settings of the classifier membership attack.

    ``shadow_models`` (even; 0 for the loss attack alone) are trained ``shadow_epochs`` epochs
    on seeded halves of the candidates unless trained ones are passed in (a callback keeps them
    in step with the target: one epoch per target epoch).
    """

    shadow_models: int = 2
    shadow_epochs: int = 1
    n_boot: int = 500
    seed: int = 0


def membership_candidates(view: Any, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Members and held-out photos of the same people in equal numbers (seeded): images, labels, membership."""
    mem, held = view.members, view.heldout
    n = min(len(mem), len(held))
    g = torch.Generator().manual_seed(seed)
    mi = torch.randperm(len(mem), generator=g)[:n]
    hi = torch.randperm(len(held), generator=g)[:n]
    x = torch.cat([mem.images[mi], held.images[hi]])
    y = torch.cat([mem.labels[mi], held.labels[hi]])
    m = torch.cat([torch.ones(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)])
    return x, y, m


def make_shadow_models(target: Any, view: Any, config: MembershipConfig) -> ShadowModels:
    """Untrained shadow models over the candidates, built from the target's architecture."""
    if target.make_network is None:
        raise ValueError("LiRA shadow models need the target's architecture: give classifier_target(..., shadow_factory=...)")
    x, y, _ = membership_candidates(view, config.seed)
    return ShadowModels(target.make_network, x, y, k=config.shadow_models, lr=target.lr, seed=config.seed)


@register_attack("membership", config=MembershipConfig, target="classifier", needs=("members", "heldout"))
def run_membership(target: Any, view: Any, config: MembershipConfig, *, shadow: ShadowModels | None = None) -> Result:
    """Loss-threshold and offline-LiRA membership inference on a classifier (Yeom et al. 2018; Carlini et al. 2022)."""
    x, y, m = membership_candidates(view, config.seed)
    with torch.random.fork_rng():  # a noisy (defended) forward gives the same logits every time
        torch.manual_seed(config.seed)
        logits = predict_logits(target.logits, x.to(target.device)).cpu()
    sub = {"loss": loss_attack(logits, y, m)}
    if config.shadow_models:
        if shadow is None:
            shadow = make_shadow_models(target, view, config)
        if shadow.epochs_ < config.shadow_epochs:
            shadow.train(config.shadow_epochs - shadow.epochs_)
        with torch.random.fork_rng():  # shadow models of a defended network are noisy too: seeded the same way
            torch.manual_seed(config.seed + 1)
            reference = shadow.confidences(x, y)
        sub["lira_offline"] = offline_lira(logit_confidence(logits, y), reference, shadow.in_mask, m)
    signals, counts = {}, {}
    for name, r in sub.items():
        signals[name], counts = roc_signals(r.scores, r.labels, n_boot=config.n_boot, seed=config.seed)
    best, merged = merge_sub_attacks(signals, "auc")
    return Result(attack="membership", signals=merged, headline="auc", best=best, values=counts,
                  knowledge="black-box logits" + (f"; {config.shadow_models} shadow models" if config.shadow_models else ""),
                  scores={name: (r.scores, r.labels) for name, r in sub.items()})
