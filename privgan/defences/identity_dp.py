"""Privacy by person: DP-SGD whose unit is an identity, not a photo.

Photo-level DP-SGD bounds what one *photo* changes. A person with k photos only gets group
privacy from it: with (ε, δ) per photo, (kε, k·e^{(k-1)ε}·δ) for the person (``group_privacy``),
vacuous for k = 30 at any useful ε. Webster et al.'s attack is on people, so the unit must be
the person:

1. each step samples *people* (Poisson, rate q over identities: ``IdentityPoissonSampler``)
   and takes all their photos;
2. each person's per-photo gradients are summed, and that sum is clipped to ``max_grad_norm``
   (``IdentityDPOptimizer``), so one person moves one update by at most the clip norm however
   many photos they have;
3. Gaussian noise σ·C is added once and the sum divided by the expected number of people q·N;
4. the accountant runs over identities: sample rate q, the same Gaussian mechanism, so
   ``identity_epsilon`` is Opacus's ε for (σ, q, steps).

Per-photo gradients come from Opacus's ``GradSampleModule``; the optimizer is Opacus's
``DPOptimizer`` with the clipping unit changed, so noise, scaling and accounting are Opacus's own.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator, Sequence

import torch
from opacus.optimizers import DPOptimizer
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate


class IdentityLabelError(ValueError):
    """Identity-level DP was asked for on data without usable identity labels; the message says why."""


def identity_index(identities: Sequence[object] | torch.Tensor | None, n_items: int) -> torch.Tensor:
    """Identity labels of a data set as 0..P-1 ids, checked: one per item, none missing."""
    if identities is None:
        raise IdentityLabelError(
            "dp.unit: identity needs the person each training photo shows (the datamodule's identity labels), and this "
            "data has none: give the datamodule identity labels or use dp.unit: photo")
    labels = list(identities.tolist() if isinstance(identities, torch.Tensor) else identities)
    if len(labels) != n_items:
        raise IdentityLabelError(f"dp.unit: identity needs one identity label per training photo: got {len(labels)} labels "
                                 f"for {n_items} photos")
    missing = [i for i, v in enumerate(labels) if v is None or (isinstance(v, float) and math.isnan(v))]
    if missing:
        raise IdentityLabelError(f"dp.unit: identity: {len(missing)} training photos have no identity label "
                                 f"(first: item {missing[0]})")
    ids: dict[object, int] = {}
    return torch.tensor([ids.setdefault(v, len(ids)) for v in labels], dtype=torch.long)


class IdentityPoissonSampler(Sampler[list[int]]):
    """Batches of whole people: each identity joins a step with probability ``sample_rate``, with all its photos."""

    def __init__(self, identity_of_item: torch.Tensor, sample_rate: float, steps: int, *,
                 generator: torch.Generator | None = None, on_epoch: Callable[[], None] | None = None,
                 on_batch: Callable[[torch.Tensor], None] | None = None) -> None:
        if not 0 < sample_rate <= 1:
            raise ValueError(f"identity sample rate must be in (0, 1], got {sample_rate}")
        self.ids = identity_of_item.long()
        self.n_identities = int(self.ids.max()) + 1 if len(self.ids) else 0
        self.members = [torch.nonzero(self.ids == p).squeeze(1).tolist() for p in range(self.n_identities)]
        self.sample_rate, self.steps, self.generator = sample_rate, steps, generator
        self.on_epoch, self.on_batch = on_epoch, on_batch  # tell the optimizer each batch's identities, in order

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        if self.on_epoch is not None:
            self.on_epoch()
        for _ in range(self.steps):
            chosen = torch.nonzero(torch.rand(self.n_identities, generator=self.generator) < self.sample_rate).squeeze(1)
            batch = [i for p in chosen.tolist() for i in self.members[p]]  # may be empty: a step with noise only
            if self.on_batch is not None:
                self.on_batch(self.ids[batch])
            yield batch


class IdentityDPOptimizer(DPOptimizer):
    """Opacus's DPOptimizer with the person as the clipping unit: per-photo gradients summed per identity, then clipped.

    Before each ``step`` call ``set_identities(ids)`` with the identity of the batch's first rows
    (rows after them, such as a GAN discriminator's fakes, are each their own unit: they are no
    one's data); ``expected_batch_size`` is the expected number of *people* per step (q x number
    of identities).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batch_identities: torch.Tensor | None = None
        self.pending: deque[torch.Tensor] = deque()  # identities of batches drawn and not yet stepped on, in order

    def set_identities(self, identities: torch.Tensor) -> None:
        """The identity of each row of the coming step's batch."""
        self.batch_identities = torch.as_tensor(identities).long()

    def pre_step(self, closure=None):  # noqa: ANN001 - Opacus's signature
        """An empty Poisson draw (no backward pass) steps on zero-row per-photo gradients: noise only, as accounted."""
        for p in self.params:
            if getattr(p, "grad_sample", None) is None:
                p.grad_sample = torch.zeros(0, *p.shape, dtype=p.dtype, device=p.device)
        if self.batch_identities is None and self.pending:  # batches from IdentityPoissonSampler(on_batch=pending.append)
            self.batch_identities = self.pending.popleft()
        if self.batch_identities is None and all(len(p.grad_sample) == 0 for p in self.params):
            self.batch_identities = torch.empty(0, dtype=torch.long)
        return super().pre_step(closure)

    def clip_and_accumulate(self) -> None:
        """Sum each person's per-photo gradients, then clip per person (Opacus clips the rows it is given)."""
        ids = self.batch_identities
        if ids is None:
            raise IdentityLabelError("IdentityDPOptimizer.step without identities: call set_identities(batch identity "
                                     "labels) before every step")
        for p in self.params:
            if isinstance(p.grad_sample, list):
                raise ValueError("identity-level DP does not support gradient accumulation (several backward passes per step)")
            g = p.grad_sample
            if len(g) < len(ids):
                raise IdentityLabelError(f"{len(ids)} identity labels for a batch of {len(g)} rows")
            if len(g) > len(ids):  # rows after the real ones (a GAN's fakes): no one's data, each its own unit
                start = int(ids.max()) + 1 if len(ids) else 0
                ids = torch.cat([ids, torch.arange(start, start + len(g) - len(ids))])
            if len(g):
                _, inv = torch.unique(ids.to(g.device), return_inverse=True)
                p.grad_sample = torch.zeros(int(inv.max()) + 1, *g.shape[1:], dtype=g.dtype, device=g.device).index_add_(0, inv, g)
        super().clip_and_accumulate()
        self.batch_identities = None


def identity_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "prv") -> float:
    """ε per person after ``steps`` steps sampling identities at ``sample_rate`` with noise σ (Opacus's accountant)."""
    from opacus.accountants import create_accountant

    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    acc = create_accountant(accountant)
    acc.history = [(noise_multiplier, sample_rate, steps)]
    return float(acc.get_epsilon(delta=delta))


def group_privacy(epsilon: float, delta: float, k: int) -> tuple[float, float]:
    """(ε, δ) for a group of ``k`` records from (ε, δ) per record: (kε, k·e^{(k-1)ε}·δ); δ ≥ 1 means no guarantee."""
    if k < 1:
        raise ValueError(f"group size must be >= 1, got {k}")
    if math.isinf(epsilon):
        return math.inf, 1.0
    log_delta = math.log(k) + (k - 1) * epsilon + math.log(delta) if delta > 0 else -math.inf
    return k * epsilon, min(1.0, math.exp(min(log_delta, 0.0)))


@dataclass
class IdentityDPState:
    """What ``make_identity_private`` set up: per-photo gradients, the person-clipping optimizer, the identity accountant."""

    grad_sample_module: nn.Module
    optimizer: IdentityDPOptimizer
    accountant: Any
    sample_rate: float  # per identity
    n_identities: int
    largest_identity: int  # photos of the person with the most
    delta: float

    def epsilon(self) -> float:
        """ε per person so far at ``delta`` (0 before the first step, inf without noise)."""
        if not len(self.accountant):
            return 0.0
        if self.optimizer.noise_multiplier == 0:
            return math.inf
        return float(self.accountant.get_epsilon(delta=self.delta))


def make_identity_private(model: nn.Module, optimizer: torch.optim.Optimizer, dataset: Dataset,
                          identities: Sequence[object] | torch.Tensor | None, *, noise_multiplier: float,
                          max_grad_norm: float, expected_identities: float, delta: float = 1e-5, accountant: str = "prv",
                          steps_per_epoch: int | None = None, generator: torch.Generator | None = None,
                          num_workers: int = 0) -> tuple[IdentityDPState, DataLoader]:
    """Wrap ``model`` and ``optimizer`` for person-level DP-SGD and give the loader of whole-person Poisson batches.

    ``expected_identities``: people per step on average (sample rate q = that / number of people);
    an epoch is ``steps_per_epoch`` steps (default 1 / q). Each batch is ``(dataset batch, identity ids)``:
    pass the ids to ``optimizer.set_identities`` before ``step``.
    """
    ids = identity_index(identities, len(dataset))  # type: ignore[arg-type]
    n_id = int(ids.max()) + 1
    if not 0 < expected_identities <= n_id:
        raise ValueError(f"expected_identities must be in (0, {n_id}] (the number of people), got {expected_identities}")
    state = _identity_private(model, optimizer, ids, expected_identities, noise_multiplier=noise_multiplier,
                              max_grad_norm=max_grad_norm, delta=delta, accountant=accountant, generator=generator)
    steps = steps_per_epoch or max(1, round(1 / state.sample_rate))
    loader = DataLoader(IdentityTagged(dataset, ids),
                        batch_sampler=IdentityPoissonSampler(ids, state.sample_rate, steps, generator=generator),
                        num_workers=num_workers, collate_fn=partial(collate_tagged, dataset))
    return state, loader


def _identity_private(model: nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor, per_step: float, *,
                      noise_multiplier: float, max_grad_norm: float, delta: float, accountant: str,
                      generator: torch.Generator | None) -> IdentityDPState:
    """The parts both entry points share: per-photo gradients, the person-clipping optimizer, the accountant at q = per_step / people."""
    from opacus import GradSampleModule
    from opacus.accountants import create_accountant

    n_id = int(ids.max()) + 1
    q = per_step / n_id
    gsm = model if isinstance(model, GradSampleModule) else GradSampleModule(model, loss_reduction="mean")
    opt = IdentityDPOptimizer(optimizer, noise_multiplier=float(noise_multiplier), max_grad_norm=max_grad_norm,
                              expected_batch_size=max(1, round(per_step)), loss_reduction="mean", generator=generator)
    acc = create_accountant(accountant)
    opt.attach_step_hook(acc.get_optimizer_hook_fn(sample_rate=q))
    return IdentityDPState(gsm, opt, acc, q, n_id, int(torch.bincount(ids).max()), delta)


class IdentityTagged(Dataset):
    """``dataset[i]`` with the identity id of item i: ``(item, id)``."""

    def __init__(self, dataset: Dataset, ids: torch.Tensor) -> None:
        self.dataset, self.ids = dataset, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[Any, torch.Tensor]:
        return self.dataset[i], self.ids[i]


def collate_tagged(dataset: Dataset, items: list) -> tuple[Any, torch.Tensor]:
    """(default-collated items, identity ids); an empty Poisson batch gives zero-row tensors shaped like the data."""
    if not items:
        proto = default_collate([dataset[0]])
        empty = type(proto)(t[:0] for t in proto) if isinstance(proto, (list, tuple)) else proto[:0]
        return empty, torch.empty(0, dtype=torch.long)
    return default_collate([x for x, _ in items]), torch.stack([i for _, i in items])


def identity_private_in_loop(model: nn.Module, optimizer: torch.optim.Optimizer, plain: DataLoader,
                             identities: torch.Tensor | Sequence[object] | None, *, noise_multiplier: float | None,
                             target_epsilon: float | None, max_grad_norm: float, delta: float, accountant: str,
                             identities_per_step: float | None, epochs: int | None,
                             generator: torch.Generator | None = None) -> tuple[IdentityDPState, DataLoader]:
    """Person-level DP-SGD for a training loop that steps once per batch of ``plain``'s format (Lightning's).

    The loader yields ``plain``'s own batches, drawn person by person; each batch's identities go
    to the optimizer through its ``pending`` queue in draw order, so ``training_step`` needs no change.
    ``identities_per_step`` default: the same expected photos per step as ``plain``'s batch size.
    With ``target_epsilon``, σ is the one that reaches it per person at ``epochs``.
    """
    from opacus.accountants.utils import get_noise_multiplier
    from opacus.data_loader import dtype_safe, shape_safe, wrap_collate_with_empty

    dataset = plain.dataset
    ids = identity_index(identities, len(dataset))  # type: ignore[arg-type]
    n_id = int(ids.max()) + 1
    per_step = identities_per_step or (plain.batch_size or 1) * n_id / len(ids)
    if not 0 < per_step <= n_id:
        raise ValueError(f"dp.identities_per_step must be in (0, {n_id}] (the number of people), got {per_step}")
    if target_epsilon is not None:
        if not epochs:
            raise ValueError("dp.target_epsilon needs a finite trainer.max_epochs to plan the noise for")
        noise_multiplier = get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                                sample_rate=per_step / n_id, epochs=epochs, accountant=accountant)
    state = _identity_private(model, optimizer, ids, per_step, noise_multiplier=float(noise_multiplier),
                              max_grad_norm=max_grad_norm, delta=delta, accountant=accountant, generator=None)
    opt, q = state.optimizer, state.sample_rate
    first = dataset[0]
    first = first if isinstance(first, (tuple, list)) else (first,)
    sampler = IdentityPoissonSampler(ids, q, max(1, round(1 / q)), generator=generator, on_epoch=opt.pending.clear,
                                     on_batch=opt.pending.append)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=plain.num_workers,
                        collate_fn=wrap_collate_with_empty(collate_fn=plain.collate_fn or default_collate,
                                                           sample_empty_shapes=[(0, *shape_safe(x)) for x in first],
                                                           dtypes=[dtype_safe(x) for x in first]))
    return state, loader
