"""Attacks beside training: a snapshot of the module is attacked in a worker process while training goes on.

An attack callback with ``asynchronous=True`` copies the module at its attack epoch (weights, and the
step, epoch, logged metrics and ε of that moment) and hands the copy, the attacker's view and the
callback's settings to one worker process (spawned once, kept for the fit), then returns at once.
Finished Results are published at the next batch or epoch end, *at the snapshot's step*, so the
curve stays in training order; at the end of training the callback waits for what is still running,
with a progress bar. A checkpoint taken while an attack is pending keeps the snapshot's weights, so
a resumed run attacks it again and loses no point.

A process, not a thread: attacks seed torch's global random generator for their own draws (decoder
initialisation, shadow models); in a thread that would rewind the training's random stream. The
worker gets ``worker_threads`` torch threads (default 1), so training keeps the rest of the cores.
"""

from __future__ import annotations

import copy
import math
import multiprocessing
import pickle
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import lightning as L


@dataclass
class Snapshot:
    """The module and the training position an asynchronous attack runs at."""

    step: int
    epoch: int
    metrics: dict[str, float]
    epsilon: float
    delta: float | None
    epsilon_identity: float | None = None
    delta_identity: float | None = None
    fit_seconds: float = 0.0
    module: Any = field(default=None, repr=False)

    def to_state(self) -> dict[str, Any]:
        """Checkpoint form: the position and the module's weights (so a resumed run can attack it again)."""
        return {"step": self.step, "epoch": self.epoch, "metrics": self.metrics, "epsilon": self.epsilon, "delta": self.delta,
                "epsilon_identity": self.epsilon_identity, "delta_identity": self.delta_identity,
                "fit_seconds": self.fit_seconds,
                "module_state": {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}}


def copy_module(pl_module: L.LightningModule) -> L.LightningModule:
    """A detached copy of the module for attacking: the trainer and the DP machinery are not copied along."""
    memo: dict[int, Any] = {}
    trainer = getattr(pl_module, "_trainer", None)
    if trainer is not None:
        memo[id(trainer)] = None
    dp = getattr(pl_module, "_dp", None)
    if dp is not None:
        memo[id(dp)] = None
    snap = copy.deepcopy(pl_module, memo)
    _quiet_dp_hooks(snap)
    return snap.eval()


def _quiet_dp_hooks(module: Any) -> None:
    """Switch off the per-sample-gradient hooks a DP module's copy carries along (the copy is attacked, never trained)."""
    try:
        from opacus import GradSampleModule
    except ImportError:  # pragma: no cover - opacus is a dependency
        return
    owners = {m for m in module.modules() if isinstance(m, GradSampleModule)}
    for m in module.modules():
        for hooks in (m._forward_hooks, m._backward_hooks, m._forward_pre_hooks):
            for h in hooks.values():
                owner = getattr(getattr(h, "func", h), "__self__", None)
                if isinstance(owner, GradSampleModule):
                    owners.add(owner)
    for gsm in owners:
        gsm.disable_hooks()


def take_snapshot(trainer: L.Trainer, pl_module: L.LightningModule) -> Snapshot:
    """The module copied now, with the step, epoch, logged scalars, ε / δ and fit time of this moment."""
    from privgan.callbacks.privacy_spent import privacy_spent

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    eps, delta = privacy_spent(trainer, pl_module)
    dp = getattr(pl_module, "_dp", None)
    person = dp.identity_privacy() if dp is not None and hasattr(dp, "identity_privacy") else None
    curve = next((cb for cb in trainer.callbacks if callable(getattr(cb, "elapsed", None))), None)
    return Snapshot(step=int(trainer.global_step), epoch=int(trainer.current_epoch), metrics=metrics, epsilon=eps,
                    delta=delta, epsilon_identity=person[0] if person else None, delta_identity=person[1] if person else None,
                    fit_seconds=curve.elapsed() if curve is not None else math.nan, module=copy_module(pl_module))


def snapshot_from_state(state: dict[str, Any], pl_module: L.LightningModule) -> Snapshot:
    """A pending attack's snapshot rebuilt after a resume: a copy of the module with the saved weights."""
    module = copy_module(pl_module)
    module.load_state_dict(state["module_state"])
    return Snapshot(step=int(state["step"]), epoch=int(state["epoch"]), metrics=dict(state["metrics"]),
                    epsilon=float(state["epsilon"]), delta=state["delta"], epsilon_identity=state.get("epsilon_identity"),
                    delta_identity=state.get("delta_identity"), fit_seconds=float(state.get("fit_seconds", math.nan)),
                    module=module)


def attack_in_worker(payload: bytes, threads: int) -> Any:
    """Run in the worker process: the callback's attack on the snapshot module (``AttackCallback.attack_module``)."""
    import torch

    torch.set_num_threads(max(1, threads))
    callback, module, view, epoch, resources = pickle.loads(payload)
    return callback.attack_module(module, view, epoch, resources)


class AttackWorker:
    """One spawned worker process per callback: attacks run one after another, in the order they were submitted."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._pool: ProcessPoolExecutor | None = None
        self.pending: list[tuple[Snapshot, Future]] = []

    def submit(self, snapshot: Snapshot, callback: Any, view: Any, resources: dict[str, Any]) -> None:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        # Pickled here, now, by value: the executor would pickle its arguments later in a feeder thread, through
        # torch's multiprocessing reductions, which move each tensor's storage into shared memory in place; the
        # view's tensors can be the training data's, swapped while a DataLoader reads them (seen: a NaN loss).
        payload = pickle.dumps((callback, snapshot.module, view, snapshot.epoch, resources), protocol=pickle.HIGHEST_PROTOCOL)
        fut = self._pool.submit(attack_in_worker, payload, self.threads)
        self.pending.append((snapshot, fut))

    def done(self) -> list[tuple[Snapshot, Future]]:
        """The finished attacks at the head of the queue (in submission order), removed from it."""
        out = []
        while self.pending and self.pending[0][1].done():
            out.append(self.pending.pop(0))
        return out

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
