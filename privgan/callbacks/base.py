"""What every attack callback does alike: decide when, build target and view, call ``run_attack``, publish."""

from __future__ import annotations

import contextlib
import copy
import traceback
import weakref
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn

from privgan.attacks.registry import get_attack, make_config, run_attack
from privgan.attacks.result import Result
from privgan.targets.view import AttackerView, view_from

#: Sample banks shared by every callback that samples the same module the same way at the same step.
_SHARED_BANKS: "weakref.WeakKeyDictionary[Any, tuple[int, dict]]" = weakref.WeakKeyDictionary()


class AttackCallback(L.Callback):
    """Runs the registered attack ``attack`` every ``every_n_epochs`` epochs (and after the last) on rank zero.

    It only stores its settings, decides when to run, builds the target and the attacker's view,
    calls :func:`privgan.attacks.run_attack`, and hands the :class:`~privgan.attacks.Result` to the
    loggers, the run folder and any ``PrivacyUtilityCurve``. ``config`` is the attack's config (a
    dataclass or a dict; keyword ``overrides`` replace its fields). ``references`` (a folder, see
    :class:`privgan.data.ReferenceFolder`) replaces the trainer's datamodule as the source of the
    view. ``name`` tells two callbacks of one attack apart (curve, keys, files, checkpoint slot).
    An attack that raises is a warning and training goes on (``fail_on_error=True`` stops it).
    ``asynchronous=True``: the attack runs on a snapshot of the module in a worker process (with
    ``worker_threads`` torch threads) while training goes on, and its Result lands at the snapshot's
    step (``privgan.callbacks.asynchronous``).
    """

    attack: ClassVar[str] = ""
    image_size: ClassVar[int | None] = None

    def __init__(self, *, config: Any = None, every_n_epochs: int = 1, name: str | None = None, references: Any = None,
                 out_dir: str | None = None, log_gallery: bool = False, fail_on_error: bool = False, asynchronous: bool = False,
                 worker_threads: int = 1, **overrides: Any) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.config = make_config(self.attack, config, **overrides)
        self.every_n_epochs, self.name, self.references = every_n_epochs, name or self.attack, references
        self.out_dir, self.log_gallery, self.fail_on_error = out_dir, log_gallery, fail_on_error
        self.failures: list[dict[str, Any]] = []
        self.last_step_run = -1
        self.last_result: Result | None = None
        self._noted: set[str] = set()
        self._view: AttackerView | None = None
        self.asynchronous, self.worker_threads = asynchronous, worker_threads
        self._worker: Any = None
        self._resubmit: list[dict[str, Any]] = []

    @property
    def state_key(self) -> str:
        """One checkpoint slot per callback name, so two callbacks of one class can share a trainer."""
        return self._generate_state_key(name=self.name)

    # -- what each callback provides -------------------------------------------------------------
    def target(self, pl_module: Any) -> Any:
        """The attack target built from a module (adapters in ``privgan.targets.adapters``); also used by ``privgan attack``."""
        raise NotImplementedError

    def target_at(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Any:
        """The target for this run during training (GAN callbacks share one per step)."""
        return self.target(pl_module)

    def resources(self) -> dict[str, Any]:
        """Attacker-side state reused across runs (none by default)."""
        return {}

    def resources_from_checkpoint(self, state: dict[str, Any], target: Any, view: AttackerView, config: Any) -> dict[str, Any]:
        """Attacker state this callback kept in a checkpoint (its ``state_dict``), for ``privgan attack`` (none by default)."""
        return {}

    def run_config(self, epoch: int) -> Any:
        """The config of a run after ``epoch`` (the stored one unless a subclass ties it to training progress)."""
        return self.config

    # -- when ------------------------------------------------------------------------------------
    def view(self, trainer: L.Trainer) -> AttackerView:
        """The attacker's view, read once from ``references`` or the trainer's datamodule."""
        if self._view is None:
            source = self.references if self.references is not None else trainer.datamodule
            self._view = view_from(source, needs=get_attack(self.attack).needs, image_size=self.image_size)
        return self._view

    def should_run(self, trainer: L.Trainer) -> bool:
        """Every N epochs and after the final epoch; never twice at one step (a max_time stop used to repeat it)."""
        epoch = trainer.current_epoch
        if trainer.global_step <= self.last_step_run:
            return False
        last = trainer.max_epochs is not None and trainer.max_epochs > 0 and epoch + 1 >= trainer.max_epochs
        return (epoch + 1) % self.every_n_epochs == 0 or last or trainer.should_stop

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        from privgan.callbacks.ddp_coordination import attack_on_rank_zero, distributed

        if distributed(trainer):  # every rank meets the same collectives; rank 0 attacks
            attack_on_rank_zero(self, trainer, pl_module)
        elif trainer.is_global_zero:
            self.epoch_end_here(trainer, pl_module)

    def share_work(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Under DDP, on every rank before rank 0 attacks: this rank's share of the attack's parallel work (none by default)."""

    def epoch_end_here(self, trainer: L.Trainer, pl_module: L.LightningModule, *, decided: bool = False) -> None:
        """This process's attack at an epoch end: publish finished asynchronous ones, then attack when it is time
        (``decided``: the DDP path has already collected and decided)."""
        if not decided:
            self.collect(trainer, pl_module)
            if not self.should_run(trainer):
                return
        if self.asynchronous:
            self.run_async(trainer, pl_module)
        else:
            self.run_now(trainer, pl_module)

    def run_now(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Result | None:
        """Attack immediately and publish the Result (None when the attack failed)."""
        self.last_step_run = trainer.global_step
        try:
            result = self._attack(trainer, pl_module, trainer.current_epoch, self.resources())
        except Exception as e:  # noqa: BLE001 - an attack must not kill a long training run
            return self._failed(e, trainer.current_epoch)
        return self._publish(trainer, pl_module, result)

    def _attack(self, trainer: L.Trainer, module: L.LightningModule, epoch: int, resources: dict[str, Any]) -> Result:
        """``run_attack`` on ``module`` in eval mode (under the module's attack context), its mode restored after."""
        return self._run(self.target_at(trainer, module), module, self.view(trainer), epoch, resources)

    def attack_module(self, module: Any, view: AttackerView, epoch: int, resources: dict[str, Any]) -> Result:
        """The attack on a module outside training (an asynchronous attack's worker process): no trainer, no shared bank."""
        return self._run(self.target(module), module, view, epoch, resources)

    def _run(self, target: Any, module: Any, view: AttackerView, epoch: int, resources: dict[str, Any]) -> Result:
        with attack_mode(module):
            return run_attack(self.attack, target, view, self.run_config(epoch), resources=resources)

    #: Attributes that stay in the training process when the callback is sent to an asynchronous attack's worker.
    _local_only: ClassVar[tuple[str, ...]] = ("_worker", "_view", "last_result", "_resubmit")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for k in self._local_only:
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for k in self._local_only:
            self.__dict__.setdefault(k, None if k != "_resubmit" else [])

    def _failed(self, e: Exception, epoch: int) -> None:
        if self.fail_on_error:
            raise e
        frame = traceback.extract_tb(e.__traceback__)[-1]
        where = f"{frame.filename}:{frame.lineno}"
        self.failures.append({"epoch": epoch, "error": repr(e), "where": where})
        rank_zero_warn(f"privgan {type(self).__name__} failed at epoch {epoch}: {e!r} (at {where}); training goes on")
        return None

    def _publish(self, trainer: L.Trainer, pl_module: L.LightningModule, result: Result, at: Any = None) -> Result:
        self.last_result = result
        for note in result.notes:  # say it once on the console too (a skipped sub-attack, a weak threshold)
            if note not in self._noted:
                self._noted.add(note)
                rank_zero_warn(f"privgan {self.name}: {note}")
        publish(trainer, pl_module, self.name, result, out_dir=self.out_dir, log_gallery=self.log_gallery, at=at)
        return result

    # -- asynchronous attacks --------------------------------------------------------------------
    def run_async(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Snapshot the module now and attack the snapshot in the worker process; training goes on."""
        from privgan.callbacks.asynchronous import take_snapshot

        self.last_step_run = trainer.global_step
        self._submit(trainer, take_snapshot(trainer, pl_module))

    def _submit(self, trainer: L.Trainer, snapshot: Any) -> None:
        from privgan.callbacks.asynchronous import AttackWorker

        if self._worker is None:
            self._worker = AttackWorker(self.worker_threads)
        resources = copy.deepcopy(self.resources())  # e.g. shadow models: they go on training here meanwhile
        self._worker.submit(snapshot, self, self.view(trainer), resources)

    def collect(self, trainer: L.Trainer, pl_module: L.LightningModule, *, wait: bool = False) -> None:
        """Publish the asynchronous attacks that finished (all of them, waiting with a progress bar, when ``wait``)."""
        if self._worker is None:
            return
        if wait and self._worker.pending:
            from tqdm.auto import tqdm

            for snap, fut in tqdm(list(self._worker.pending), desc=f"privgan {self.name}: waiting for attacks", unit="attack",
                                  disable=not trainer.is_global_zero):
                fut.exception()  # block until it is done
        for snap, fut in self._worker.done():
            try:
                result = fut.result()
            except Exception as e:  # noqa: BLE001 - as for a synchronous attack
                self._failed(e, snap.epoch)
                continue
            self._publish(trainer, pl_module, result, at=snap)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        if self.asynchronous and trainer.is_global_zero:
            self.collect(trainer, pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After a resume: attack again the snapshots whose attacks were still running when the checkpoint was saved."""
        if self._resubmit and trainer.is_global_zero:
            from privgan.callbacks.asynchronous import snapshot_from_state

            for state in self._resubmit:
                self._submit(trainer, snapshot_from_state(state, pl_module))
        self._resubmit = []

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.collect(trainer, pl_module, wait=True)
        if self._worker is not None:
            self._worker.shutdown()
            self._worker = None

    # -- resume ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        pending = [snap.to_state() for snap, _ in self._worker.pending] if self._worker is not None else []
        return {"failures": self.failures, "last_step_run": self.last_step_run, "pending": pending + self._resubmit}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.failures = list(state_dict.get("failures", []))
        self.last_step_run = int(state_dict.get("last_step_run", -1))
        self._resubmit = list(state_dict.get("pending", []))


@contextlib.contextmanager
def attack_mode(module: Any):
    """The module in eval mode under its own ``attack_context`` (if any) while attacked; its mode restored after."""
    was_training = module.training
    context = getattr(module, "attack_context", contextlib.nullcontext)
    try:
        with context():
            module.eval()
            yield module
    finally:
        module.train(was_training)


def shared_bank(trainer: L.Trainer, pl_module: L.LightningModule, sampler: tuple) -> dict:
    """The sample-and-embedding bank of this module at this step for one way of sampling it (``sampler``):
    GAN attacks that sample alike share their samples and embeddings; each keeps its own target settings."""
    step, banks = _SHARED_BANKS.get(pl_module, (-1, {}))
    if step != trainer.global_step:
        banks = {}
        _SHARED_BANKS[pl_module] = (trainer.global_step, banks)
    return banks.setdefault(sampler, {})


def run_dir(trainer: L.Trainer, out_dir: str | None = None) -> Path:
    """Where a callback writes its files: ``out_dir`` or the trainer's default_root_dir.

    Raises :class:`privgan.reporting.local_files.RunFolderBusy` when another live run holds the
    folder's lock (``privgan fit`` and ``PrivacyUtilityCurve`` take it), rather than overwrite its files.
    """
    from privgan.reporting.local_files import check_folder_free

    p = Path(out_dir) if out_dir else Path(trainer.default_root_dir)
    p.mkdir(parents=True, exist_ok=True)
    check_folder_free(p)
    return p


def publish(trainer: L.Trainer, pl_module: L.LightningModule, name: str, result: Result, *, out_dir: str | None,
            log_gallery: bool, at: Any = None) -> None:
    """Hand a Result to the loggers, the run folder and the trainer's curve (the one way results leave a callback).

    ``at``: the :class:`privgan.callbacks.asynchronous.Snapshot` an asynchronous attack ran on; the Result
    is filed at its step and epoch, with its utility and ε, instead of the trainer's current ones.
    """
    from privgan.reporting.result_files import save_result
    from privgan.reporting.wandb_helpers import log_result

    epoch = trainer.current_epoch if at is None else at.epoch
    files = save_result(result, run_dir(trainer, out_dir) / name, f"epoch_{epoch:03d}")
    log_result(trainer, name, result, files, log_gallery=log_gallery, step=None if at is None else at.step, epoch=epoch)
    for cb in trainer.callbacks:  # the curve (or anything else that collects results)
        if callable(getattr(cb, "add_result", None)):
            cb.add_result(trainer, pl_module, name, result, at=at)
