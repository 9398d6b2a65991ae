"""DP-SGD on several processes: per-rank Poisson shards that keep empty batches, the sampler switch, gradient sync."""

from __future__ import annotations

import secrets
import warnings
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


def dp_in_use(trainer: Any, module: Any) -> bool:
    """Whether this fit trains with DP-SGD: the module has its own ``dp_config`` or a DP callback is attached."""
    if getattr(module, "dp_config", None) is not None:
        return True
    return any(getattr(cb, "is_dp_callback", False) for cb in getattr(trainer, "callbacks", None) or ())


def rank_seed(seed: int, rank: int, epoch: int) -> int:
    """A 64-bit seed for (run seed, rank, epoch): independent streams per rank, reproducible per epoch."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1, dtype=np.uint64)[0])


class PoissonShardSampler(Sampler[list[int]]):
    """This rank's part of a Poisson-sampled step: every example of its shard drawn with ``sample_rate``.

    The shard is ``rank, rank + world_size, ...``: the ranks' shards partition the dataset, so each
    example joins the *global* batch independently with probability ``sample_rate`` (the Poisson
    subsampling the accountant assumes). Every epoch has ``steps`` batches on every rank, empty ones
    included, so all ranks reach the same collectives. Draws are seeded by (seed, rank, epoch), so a
    resumed fit draws new batches for its new epochs (Lightning calls ``set_epoch``).
    """

    def __init__(self, *, num_samples: int, sample_rate: float, steps: int, rank: int, world_size: int,
                 seed: int | None = None) -> None:
        if num_samples < 1:
            raise ValueError(f"PoissonShardSampler needs a non-empty dataset, got num_samples={num_samples}")
        if not 0 < sample_rate <= 1:
            raise ValueError(f"PoissonShardSampler sample_rate must be in (0, 1], got {sample_rate}")
        if not 0 <= rank < world_size:
            raise ValueError(f"PoissonShardSampler rank must be in [0, world_size={world_size}), got {rank}")
        self.num_samples, self.sample_rate, self.steps = num_samples, sample_rate, steps
        self.rank, self.world_size = rank, world_size
        self.seed = seed if seed is not None else secrets.randbits(63)  # unseeded: fresh entropy on each rank
        self.epoch = 0

    @property
    def sampler(self) -> "PoissonShardSampler":
        """Itself: Lightning's ``_set_sampler_epoch`` looks for ``set_epoch`` on ``batch_sampler.sampler``."""
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        shard = torch.arange(self.rank, self.num_samples, self.world_size)
        g = torch.Generator().manual_seed(rank_seed(self.seed, self.rank, self.epoch))
        for _ in range(self.steps):
            yield shard[torch.rand(len(shard), generator=g) < self.sample_rate].tolist()


def poisson_shard_loader(loader: DataLoader, *, rank: int, world_size: int, seed: int | None) -> DataLoader:
    """``loader``'s dataset and collate, Poisson-sampled on this rank's shard at the global rate 1 / len(loader)."""
    from opacus.data_loader import dtype_safe, shape_safe, wrap_collate_with_empty
    from torch.utils.data import IterableDataset
    from torch.utils.data._utils.collate import default_collate

    ds = loader.dataset
    if isinstance(ds, IterableDataset):
        raise ValueError("DP-SGD needs a map-style training dataset (Poisson sampling picks examples by index), "
                         f"got the IterableDataset {type(ds).__name__}")
    sample_rate = 1.0 / len(loader)
    first = ds[0]
    collate = wrap_collate_with_empty(
        collate_fn=loader.collate_fn or default_collate,
        sample_empty_shapes=[(0, *shape_safe(x)) for x in first],
        dtypes=[dtype_safe(x) for x in first],
    )
    sampler = PoissonShardSampler(num_samples=len(ds), sample_rate=sample_rate, steps=len(loader), rank=rank,
                                  world_size=world_size, seed=seed)
    return DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=loader.num_workers,
                      pin_memory=loader.pin_memory, timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
                      multiprocessing_context=loader.multiprocessing_context, prefetch_factor=loader.prefetch_factor,
                      persistent_workers=loader.persistent_workers)


def turn_off_distributed_sampler(trainer: Any) -> None:
    """Stop Lightning from replacing the Poisson sampler with its DistributedSampler (it would shard a second time).

    Lightning reads ``trainer._accelerator_connector.use_distributed_sampler`` each time it sets up a
    loader and offers no public setter, so privgan writes it here, before the loaders are built.
    Validation and test loaders are then not sharded either: each process evaluates all of them.
    """
    connector = trainer._accelerator_connector
    if connector.use_distributed_sampler:
        connector.use_distributed_sampler = False
        if trainer.is_global_zero:
            warnings.warn(
                "DP-SGD on several processes: privgan turned trainer.use_distributed_sampler off (each process draws "
                "its own Poisson shard of the training data); validation and test loaders are not sharded, so each "
                "process evaluates all of them", UserWarning, stacklevel=2)


def all_reduce_mean_grads(params: Sequence[torch.nn.Parameter], weight: float) -> float:
    """Replace each rank's (mean-over-its-batch) gradients by the mean over the global batch; returns its size.

    ``weight`` is this rank's batch size; a rank with an empty batch joins with zero gradients so every
    rank reaches the same all-reduce. With a global batch of zero the gradients are left at zero.
    """
    import torch.distributed as dist

    params = [p for p in params if p.requires_grad]
    device = params[0].device if params else torch.device("cpu")
    total = torch.tensor([float(weight)], device=device)
    dist.all_reduce(total)
    for p in params:
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        g = g * float(weight)
        dist.all_reduce(g)
        p.grad = g / total.item() if total.item() > 0 else g
    return float(total.item())


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Copy ``module``'s parameters from rank ``src`` to all ranks (what DDP does once when it wraps a model)."""
    import torch.distributed as dist

    with torch.no_grad():
        for p in module.parameters():
            dist.broadcast(p.data, src)


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy ``module``'s buffers from rank ``src`` to all ranks (what DDP's ``broadcast_buffers`` does each forward)."""
    import torch.distributed as dist

    for b in module.buffers():
        dist.broadcast(b, src)
