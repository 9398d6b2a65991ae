"""DPSGDCallback: DP-SGD (Opacus) on anyone's LightningModule, with ε logged, kept in checkpoints and paused for attacks."""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict
from typing import Any, Iterator

import lightning as L
import torch

import privgan.strategies  # noqa: F401  (registers the dp_ddp strategies, so a recipe can name them)
from privgan.defences.dp import DPSGD, DPConfigError, DPState, dp_hooks_paused, make_private_in_trainer

_MISSING = object()


class DPSGDCallback(L.Callback):
    """Train your own LightningModule with DP-SGD: add this callback, pass the data as a LightningDataModule.

    At ``setup`` it wraps the module's ``configure_optimizers``: the optimizer it returns (the
    ``optimizer_index``-th when there are several) is made private through Opacus
    (:func:`privgan.defences.dp.make_private_in_trainer`: per-sample clipping to
    ``max_grad_norm``, Gaussian noise of ``noise_multiplier`` — or the one that reaches
    ``target_epsilon`` at ``trainer.max_epochs`` — and Poisson sampling of the datamodule's
    ``train_dataloader``). ``module`` names the sub-module whose per-sample gradients are taken
    (default: the whole LightningModule); its layers must be ones Opacus supports (GroupNorm,
    not BatchNorm). Losses are assumed to be means over the batch, as Lightning's usually are.

    On several processes use privgan's ``dp_ddp`` strategies (:mod:`privgan.strategies`); the
    private module must then hold every trainable parameter (only Opacus's optimizer syncs them).

    Every epoch rank 0 logs ``dp/epsilon`` (at ``delta``), ``dp/delta`` and ``dp/noise_multiplier``;
    ``privacy_spent()`` gives (ε, δ) to :class:`~privgan.callbacks.PrivacyUtilityCurve`. The
    accountant is kept in the callback's checkpoint state, so a resumed fit continues ε. While
    privgan's attack callbacks run, Opacus's hooks are paused (the module gets an
    ``attack_context()`` for the fit). Everything is undone at the end of the fit (the
    module's own ``configure_optimizers`` and ``attack_context`` come back, Opacus's hooks go).
    """

    #: Marks a callback that owns the run's DP accounting (read by ``PrivacyUtilityCurve``).
    is_dp_callback = True

    def __init__(self, *, noise_multiplier: float | None = None, target_epsilon: float | None = None,
                 max_grad_norm: float = 1.0, delta: float = 1e-5, accountant: str = "prv", module: str | None = None,
                 optimizer_index: int = 0) -> None:
        self.config = DPSGD(noise_multiplier=noise_multiplier, target_epsilon=target_epsilon, max_grad_norm=max_grad_norm,
                            delta=delta, accountant=accountant)
        if not isinstance(optimizer_index, int) or optimizer_index < 0:
            raise DPConfigError(f"DPSGDCallback optimizer_index must be an integer >= 0, got {optimizer_index!r}")
        self.module, self.optimizer_index = module, optimizer_index
        self.dp: DPState | None = None
        self._restored_accountant: dict | None = None
        self._patched: dict[str, Any] | None = None

    # -- what the curve and the user read ---------------------------------------------------------
    def epsilon(self) -> float:
        """ε spent so far at ``delta`` (0 before the first private step; inf with zero noise)."""
        if self.dp is not None:
            return self.dp.epsilon()
        if self._restored_accountant:
            from opacus.accountants import create_accountant

            acc = create_accountant(self.config.accountant)
            acc.load_state_dict(self._restored_accountant)
            if len(acc) == 0:
                return 0.0
            if any(noise == 0 for noise, _, _ in acc.history):
                return math.inf
            return float(acc.get_epsilon(delta=self.config.delta))
        return 0.0

    def privacy_spent(self) -> tuple[float, float | None]:
        """(ε, δ) spent so far."""
        return self.epsilon(), self.config.delta

    @property
    def noise_multiplier(self) -> float | None:
        """The noise multiplier in use (planned from ``target_epsilon`` when one was given); None before the fit."""
        return self.dp.noise_multiplier if self.dp is not None else self.config.noise_multiplier

    # -- set-up and clean-up ----------------------------------------------------------------------
    def _target(self, pl_module: L.LightningModule) -> torch.nn.Module:
        if self.module is None:
            return pl_module
        try:
            return pl_module.get_submodule(self.module)
        except AttributeError as e:
            names = ", ".join(n for n, _ in pl_module.named_children()) or "none"
            raise DPConfigError(f"DPSGDCallback module={self.module!r}: {type(pl_module).__name__} has no such sub-module "
                                f"(its children: {names})") from e

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if getattr(pl_module, "dp_config", None) is not None:
            raise DPConfigError(f"{type(pl_module).__name__} already trains with its own DP-SGD (model dp=...): "
                                "use either that or DPSGDCallback, not both")
        from opacus.validators import ModuleValidator

        errors = ModuleValidator.validate(self._target(pl_module), strict=False)
        if errors:
            raise DPConfigError(
                f"{type(pl_module).__name__} cannot be trained with DP-SGD as it is: " + "; ".join(str(e) for e in errors)
                + ". Replace those layers (e.g. BatchNorm -> GroupNorm; opacus.validators.ModuleValidator.fix(module) "
                "does it) before fit")
        callback = self
        original = pl_module.configure_optimizers
        previous_context = getattr(pl_module, "attack_context", None)

        def configure_optimizers() -> Any:
            return callback._make_private(trainer, pl_module, original())

        @contextlib.contextmanager
        def attack_context() -> Iterator[None]:
            with contextlib.ExitStack() as stack:
                if previous_context is not None:
                    stack.enter_context(previous_context())
                stack.enter_context(dp_hooks_paused(callback.dp))
                yield

        self._patched = {"module": pl_module, **{name: vars(pl_module).get(name, _MISSING)
                                                 for name in ("configure_optimizers", "attack_context")}}
        # instance attributes: Lightning calls pl_module.configure_optimizers, attack callbacks pl_module.attack_context()
        object.__setattr__(pl_module, "configure_optimizers", configure_optimizers)
        object.__setattr__(pl_module, "attack_context", attack_context)

    def _make_private(self, trainer: L.Trainer, pl_module: L.LightningModule, conf: Any) -> Any:
        optimizers: list[torch.optim.Optimizer] = []
        _walk(conf, optimizers)
        if not optimizers:
            raise DPConfigError(f"{type(pl_module).__name__}.configure_optimizers returned no optimizer for DPSGDCallback to make private")
        if self.optimizer_index >= len(optimizers):
            raise DPConfigError(f"DPSGDCallback optimizer_index={self.optimizer_index}, but configure_optimizers returned "
                                f"{len(optimizers)} optimizer(s)")
        plain = optimizers[self.optimizer_index]
        if trainer.world_size > 1:
            private = {id(p) for p in self._target(pl_module).parameters()}
            outside = [n for n, p in pl_module.named_parameters() if p.requires_grad and id(p) not in private]
            if outside:
                raise DPConfigError(
                    f"DPSGDCallback on {trainer.world_size} processes: the private module "
                    f"({self.module or 'the whole LightningModule'}) must hold every trainable parameter, since only "
                    f"Opacus's optimizer syncs gradients under the dp_ddp strategy; outside it: {', '.join(outside[:5])}"
                    + (" ..." if len(outside) > 5 else "") + ". Freeze them or set module= to a module that holds them")
        self.dp = make_private_in_trainer(trainer, self._target(pl_module), plain, self.config,
                                          accountant_state=self._restored_accountant)
        return _replace(conf, plain, self.dp.optimizer)

    def _undo(self) -> None:
        if self._patched is None:
            return
        module = self._patched.pop("module")
        for name, value in self._patched.items():
            if value is _MISSING:
                vars(module).pop(name, None)
            else:
                object.__setattr__(module, name, value)
        self._patched = None
        gsm = self.dp.grad_sample_module if self.dp is not None else None
        if gsm is not None and hasattr(gsm, "autograd_grad_sample_hooks"):
            gsm.remove_hooks()  # the module is plain again (a later fit with this callback wraps it afresh)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._undo()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._undo()

    # -- every epoch ------------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.dp is None or not trainer.is_global_zero:
            return  # every rank's accountant holds the same global steps: rank 0 computes and logs ε once
        pl_module.log("dp/epsilon", self.dp.epsilon(), rank_zero_only=True)
        pl_module.log("dp/delta", self.config.delta, rank_zero_only=True)
        pl_module.log("dp/noise_multiplier", self.dp.noise_multiplier, rank_zero_only=True)

    # -- resume -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        accountant = self.dp.engine.accountant.state_dict() if self.dp is not None else self._restored_accountant
        return {"accountant": accountant, "config": asdict(self.config),
                "noise_multiplier": self.noise_multiplier}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored_accountant = state_dict.get("accountant")


def _walk(conf: Any, found: list[torch.optim.Optimizer]) -> None:
    """Every optimizer in what configure_optimizers returned (an optimizer, lists, tuples, dicts), in order."""
    if isinstance(conf, torch.optim.Optimizer):
        if not any(o is conf for o in found):
            found.append(conf)
    elif isinstance(conf, dict):
        if "optimizer" in conf:
            _walk(conf["optimizer"], found)
    elif isinstance(conf, (list, tuple)):
        for c in conf:
            _walk(c, found)


def _replace(conf: Any, old: torch.optim.Optimizer, new: torch.optim.Optimizer) -> Any:
    """``conf`` with ``old`` replaced by ``new`` (LR schedulers of ``old`` now step ``new``, which shares its param groups)."""
    if conf is old:
        return new
    if isinstance(conf, dict):
        return {k: _replace(v, old, new) for k, v in conf.items()}
    if isinstance(conf, (list, tuple)):
        return type(conf)(_replace(c, old, new) for c in conf)
    if getattr(conf, "optimizer", None) is old:  # an LR scheduler
        conf.optimizer = new
    return conf
