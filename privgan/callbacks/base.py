"""What every attack callback does alike: decide when, build target and view, call ``run_attack``, publish."""

from __future__ import annotations

import contextlib
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
    """

    attack: ClassVar[str] = ""
    image_size: ClassVar[int | None] = None

    def __init__(self, *, config: Any = None, every_n_epochs: int = 1, name: str | None = None, references: Any = None,
                 out_dir: str | None = None, log_gallery: bool = False, fail_on_error: bool = False, **overrides: Any) -> None:
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
        if trainer.sanity_checking or not trainer.is_global_zero or not self.should_run(trainer):
            return
        self.run_now(trainer, pl_module)

    def run_now(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Result | None:
        """Attack immediately and publish the Result (None when the attack failed)."""
        was_training = pl_module.training
        context = getattr(pl_module, "attack_context", contextlib.nullcontext)
        self.last_step_run = trainer.global_step
        try:
            with context():
                pl_module.eval()
                result = run_attack(self.attack, self.target_at(trainer, pl_module), self.view(trainer),
                                    self.run_config(trainer.current_epoch), resources=self.resources())
        except Exception as e:  # noqa: BLE001 - an attack must not kill a long training run
            if self.fail_on_error:
                raise
            frame = traceback.extract_tb(e.__traceback__)[-1]
            where = f"{frame.filename}:{frame.lineno}"
            self.failures.append({"epoch": trainer.current_epoch, "error": repr(e), "where": where})
            rank_zero_warn(f"privgan {type(self).__name__} failed at epoch {trainer.current_epoch}: {e!r} (at {where}); training goes on")
            return None
        finally:
            pl_module.train(was_training)
        self.last_result = result
        for note in result.notes:  # say it once on the console too (a skipped sub-attack, a weak threshold)
            if note not in self._noted:
                self._noted.add(note)
                rank_zero_warn(f"privgan {self.name}: {note}")
        publish(trainer, pl_module, self.name, result, out_dir=self.out_dir, log_gallery=self.log_gallery)
        return result

    # -- resume ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"failures": self.failures, "last_step_run": self.last_step_run}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.failures = list(state_dict.get("failures", []))
        self.last_step_run = int(state_dict.get("last_step_run", -1))


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
            log_gallery: bool) -> None:
    """Hand a Result to the loggers, the run folder and the trainer's curve (the one way results leave a callback)."""
    from privgan.reporting.result_files import save_result
    from privgan.reporting.wandb_helpers import log_result

    tag = f"epoch_{trainer.current_epoch:03d}"
    files = save_result(result, run_dir(trainer, out_dir) / name, tag)
    log_result(trainer, name, result, files, log_gallery=log_gallery)
    for cb in trainer.callbacks:  # the curve (or anything else that collects results)
        if callable(getattr(cb, "add_result", None)):
            cb.add_result(trainer, pl_module, name, result)
