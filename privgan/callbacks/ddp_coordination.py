"""Attack callbacks under DDP: every rank reaches the same collectives, shares the parallel work, and rank 0 attacks.

Rank 0 decides whether an attack runs (its decision is broadcast, so no rank waits on a collective
the others skip); every rank then does its block of the parallel work (e.g. embedding its share
of a GAN's samples, gathered into the sample bank); rank 0 runs the attack and publishes the
Result; all ranks meet at a barrier before training goes on. A collective that fails (a rank died,
or did not answer within the process group's timeout) raises an error naming the attack, the rank,
what it was doing and the step.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import lightning as L
import torch

T = TypeVar("T")


def distributed(trainer: L.Trainer) -> bool:
    """True when the fit runs on several processes in one initialised process group."""
    return trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_block(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """This rank's contiguous share ``[lo, hi)`` of ``n`` items: sizes differ by at most one, lower ranks first."""
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def collective(name: str, doing: str, step: int, fn: Callable[[], T]) -> T:
    """Run one collective; a lost peer or a timeout becomes an error naming the attack, this rank and the step."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - gloo and nccl raise RuntimeError subclasses of their own
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        raise RuntimeError(
            f"privgan {name}: rank {rank} of {world} lost its peers while {doing} at step {step} (a rank crashed, was "
            f"killed, or did not answer within the process group's timeout; see that rank's log): {e}") from e


def gather_blocks(name: str, doing: str, step: int, block: Any) -> list[Any]:
    """Every rank's ``block``, in rank order, on every rank (``all_gather_object``: CPU tensors, any size)."""
    out: list[Any] = [None] * torch.distributed.get_world_size()
    collective(name, doing, step, lambda: torch.distributed.all_gather_object(out, block))
    return out


def attack_on_rank_zero(cb: Any, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
    """``cb``, an ``AttackCallback`` (not imported: base imports this module), at one epoch end under DDP: rank 0's decision for all, the shared work on all, the attack on rank 0, a barrier."""
    step = trainer.global_step
    decision: list[Any] = [None]
    if trainer.is_global_zero:
        cb.collect(trainer, pl_module)
        decision[0] = cb.should_run(trainer)
    collective(cb.name, "agreeing whether to attack", step, lambda: torch.distributed.broadcast_object_list(decision, src=0))
    if not decision[0]:
        return
    if not cb.asynchronous:  # a snapshot attacked in a worker does its own work there
        cb.share_work(trainer, pl_module)
    if trainer.is_global_zero:
        cb.epoch_end_here(trainer, pl_module, decided=True)
    collective(cb.name, "waiting for rank 0's attack", step, torch.distributed.barrier)


def share_embeddings(name: str, target: Any, n: int, seed: int, embedder: Any, step: int) -> int:
    """Each rank embeds its block of the ``n`` samples of ``seed`` (all ranks hold the same weights, so the same
    samples); every rank's bank gets all of them, in order (so every rank sees the same bank and skips alike).
    Returns how many this rank embedded."""
    from privgan.faces.embedders import embed_batched

    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    key = target.embedding_key(n, embedder, seed=seed)
    lo, hi = rank_block(n, rank, world)
    samples = target.draw(n, seed=seed)
    block = embed_batched(embedder, samples[lo:hi]) if hi > lo else None
    blocks = gather_blocks(name, "gathering sample embeddings", step, block)
    target.bank[key] = torch.cat([b for b in blocks if b is not None])
    return hi - lo
