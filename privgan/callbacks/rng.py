"""RandomState: the random state travels in the checkpoint, so a resumed fit draws what an uninterrupted one would."""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

#: The checkpoint key that holds the random state (beside ``state_dict``, ``optimizer_states``, ...).
RNG_KEY = "privgan_random_state"


def loader_generators(trainer: L.Trainer) -> list[torch.Generator]:
    """The ``torch.Generator`` s that shuffle or sample the training data (loader, sampler, batch sampler), in order."""
    loaders = trainer.train_dataloader
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    elif not isinstance(loaders, (list, tuple)):
        loaders = [loaders]
    found: list[torch.Generator] = []
    for dl in loaders:
        if not isinstance(dl, DataLoader):
            continue
        for owner in (dl, dl.sampler, dl.batch_sampler, getattr(dl.batch_sampler, "sampler", None)):
            g = getattr(owner, "generator", None)
            if isinstance(g, torch.Generator) and all(g is not h for h in found):
                found.append(g)
    return found


def collect_random_state(trainer: L.Trainer) -> dict[str, Any]:
    """torch (CPU and CUDA), NumPy and Python global random states and the training loaders' generators."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    loop = trainer.fit_loop.epoch_loop.batch_progress.current
    return {
        "epoch": int(trainer.current_epoch),
        "at_epoch_end": loop.completed >= trainer.num_training_batches,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": (torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        "python": random.getstate(),
        "loaders": [g.get_state() for g in loader_generators(trainer)],
    }


def set_random_state(state: dict[str, Any], trainer: L.Trainer) -> list[str]:
    """Restore what ``collect_random_state`` saved; returns what could not be restored (and why)."""
    problems = []
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        if torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda"]):
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            problems.append(f"CUDA random state of {len(state['cuda'])} device(s) (this fit sees another number)")
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    gens = loader_generators(trainer)
    if len(gens) == len(state["loaders"]):
        for g, s in zip(gens, state["loaders"]):
            g.set_state(s)
    else:
        problems.append(f"training-loader generators ({len(state['loaders'])} saved, {len(gens)} in this fit)")
    return problems


class RandomState(L.Callback):
    """Saves the random state with every checkpoint and restores it when a fit resumes from one.

    Lightning restores weights, optimiser and loop state, not the random streams: a resumed fit
    would shuffle, augment and draw activation noise as a fresh one does, so its curve would
    drift from the uninterrupted run's. This callback stores torch (CPU, CUDA), NumPy and Python
    random states and the training loaders' generators under ``RNG_KEY`` and, at the start of the
    first epoch after a resume from an end-of-epoch checkpoint, puts them back and restarts the
    epoch's data iterator so its draws start from the saved state. ``privgan fit`` adds it to
    every run; single process only (with several processes each rank keeps its own stream).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[RNG_KEY] = collect_random_state(trainer)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._pending = checkpoint.get(RNG_KEY)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Drop (and say why) a saved state that cannot be put back at an epoch start."""
        state = self._pending
        if state is None:
            return
        if trainer.world_size > 1:
            self._pending = None
            rank_zero_warn("privgan RandomState: random state not restored (several processes; each rank keeps its own)")
        elif not state["at_epoch_end"]:
            self._pending = None
            rank_zero_warn(f"privgan RandomState: the checkpoint was saved inside epoch {state['epoch']}, so its random state "
                           "does not fit an epoch start; not restored (save at epoch ends: "
                           "ModelCheckpoint(save_on_train_epoch_end=True))")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state, self._pending = self._pending, None
        if state is None or trainer.current_epoch != state["epoch"] + 1:
            return
        problems = set_random_state(state, trainer)
        if problems:
            rank_zero_warn(f"privgan RandomState: not restored: {'; '.join(problems)}")
        # Lightning made this epoch's iterator before this hook (drawing from the loaders' generators);
        # make it again so the epoch draws from the restored state, as the uninterrupted fit's did.
        fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
        if fetcher is not None and getattr(fetcher, "fetched", 0) == 0:
            iter(fetcher)
