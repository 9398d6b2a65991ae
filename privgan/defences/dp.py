"""DP-SGD through Opacus: model validation/fixing, make_private wiring, ε accounting."""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader


class DPConfigError(ValueError):
    """A DP-SGD setting is missing, contradictory or out of range; the message says which."""


@dataclass(frozen=True)
class DPSGD:
    """DP-SGD settings: give ``noise_multiplier`` or ``target_epsilon`` (reached at max_epochs).

    ``unit``: what (ε, δ) protects: a ``photo`` (Opacus's per-example DP-SGD) or an ``identity``
    (person-level DP-SGD, :mod:`privgan.defences.identity_dp`: people Poisson-sampled, each person's
    gradients summed then clipped; ``identities_per_step`` expected people per step, default the
    datamodule's batch size in photos divided by the mean photos per person).
    """

    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    max_grad_norm: float = 1.0
    delta: float = 1e-5
    accountant: str = "prv"
    unit: str = "photo"
    identities_per_step: float | None = None

    def __post_init__(self) -> None:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise DPConfigError("dp: set exactly one of noise_multiplier and target_epsilon")
        if self.noise_multiplier is not None and self.noise_multiplier < 0:
            raise DPConfigError(f"dp.noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if self.target_epsilon is not None and self.target_epsilon <= 0:
            raise DPConfigError(f"dp.target_epsilon must be > 0, got {self.target_epsilon}")
        if self.max_grad_norm <= 0:
            raise DPConfigError(f"dp.max_grad_norm must be > 0, got {self.max_grad_norm}")
        if not 0 < self.delta < 1:
            raise DPConfigError(f"dp.delta must be in (0, 1), got {self.delta}")
        if self.accountant not in ("prv", "rdp", "gdp"):
            raise DPConfigError(f"dp.accountant must be 'prv', 'rdp' or 'gdp', got {self.accountant!r}")
        if self.unit not in ("photo", "identity"):
            raise DPConfigError(f"dp.unit must be 'photo' or 'identity' (what ε protects), got {self.unit!r}")
        if self.identities_per_step is not None and (self.unit != "identity" or self.identities_per_step <= 0):
            raise DPConfigError(f"dp.identities_per_step must be > 0 and needs dp.unit: identity, got "
                                f"{self.identities_per_step} with unit {self.unit!r}")


def as_dpsgd(dp: "DPSGD | dict | None") -> "DPSGD | None":
    """Accept DP settings as DPSGD or as the plain dict a checkpoint stores (weights_only loading)."""
    if dp is None or isinstance(dp, DPSGD):
        return dp
    if isinstance(dp, dict):
        try:
            return DPSGD(**dp)
        except TypeError as e:
            raise DPConfigError(f"dp: {e}; valid keys: noise_multiplier, target_epsilon, max_grad_norm, delta, accountant, "
                                "unit, identities_per_step") from e
    raise DPConfigError(f"dp must be DPSGD settings or a dict, got {type(dp).__name__}")


@contextlib.contextmanager
def dp_hooks_paused(state: "DPState | None") -> Iterator[None]:
    """Switch Opacus's per-sample-gradient hooks off while an attack runs gradients through the model.

    Without this, an attack that backpropagates to the *input* (white-box inversion) through an
    eval-mode GradSampleModule trips Opacus's backward hooks (which expect captured activations).
    """
    gsm = getattr(state, "grad_sample_module", None)
    if gsm is None or not getattr(gsm, "hooks_enabled", False):
        yield
        return
    gsm.disable_hooks()
    try:
        yield
    finally:
        gsm.enable_hooks()


def make_dp_compatible(model: nn.Module) -> nn.Module:
    """Replace layers Opacus cannot handle (BatchNorm -> GroupNorm); raise if problems remain."""
    from opacus.validators import ModuleValidator

    fixed = ModuleValidator.fix(model) if ModuleValidator.validate(model, strict=False) else model
    errors = ModuleValidator.validate(fixed, strict=False)
    if errors:
        raise DPConfigError("model cannot be trained with DP-SGD: " + "; ".join(str(e) for e in errors))
    return fixed


@dataclass
class DPState:
    """What make_private returned: the per-sample-gradient module and the privacy engine."""

    grad_sample_module: nn.Module
    optimizer: torch.optim.Optimizer
    engine: Any
    config: DPSGD
    sample_rate: float
    largest_identity: int | None = None  # photos of the person with the most (for the photo unit's group bound)

    def epsilon(self) -> float:
        """ε spent so far at the configured δ (0 before the first step; inf with zero noise)."""
        if len(self.engine.accountant) == 0:
            return 0.0
        if self.optimizer.noise_multiplier == 0:
            return math.inf
        return float(self.engine.accountant.get_epsilon(delta=self.config.delta))

    def identity_privacy(self) -> tuple[float, float] | None:
        """(ε, δ) per person: the accountant's under ``unit: identity``, else photo-level DP's group-privacy bound
        for the person with the most photos (None when that is unknown)."""
        if self.config.unit == "identity":
            return self.epsilon(), self.config.delta
        if self.largest_identity is None:
            return None
        from privgan.defences.identity_dp import group_privacy

        return group_privacy(self.epsilon(), self.config.delta, self.largest_identity)

    @property
    def noise_multiplier(self) -> float:
        """The noise multiplier in use (computed from target ε when one was given)."""
        return float(self.optimizer.noise_multiplier)


def make_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader,
    config: DPSGD,
    *,
    epochs: int | None,
    distributed: bool = False,
) -> DPState:
    """Wrap model and optimizer for DP-SGD with Poisson sampling of ``data_loader``'s dataset.

    ``data_loader``'s batch size is the expected batch of one step over *all* processes (sample rate
    1 / len(data_loader)). With ``distributed`` (a process group of several ranks is up), ``model`` is
    wrapped in Opacus's DPDDP first, so Opacus picks its DistributedDPOptimizer: noise is added on
    rank 0 only and the clipped sums are all-reduced, each rank averaging over its share
    (expected batch / world size).
    """
    from opacus import PrivacyEngine

    if distributed:
        from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

        model = DPDDP(model)  # Opacus's marker for its distributed path (broadcasts rank 0's parameters)
    engine = PrivacyEngine(accountant=config.accountant, secure_mode=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
        warnings.filterwarnings("ignore", message=".*Optimal order is the.*")
        common = dict(module=model, optimizer=optimizer, data_loader=data_loader, max_grad_norm=config.max_grad_norm,
                      poisson_sampling=True)
        if config.target_epsilon is not None:
            if not epochs or epochs < 1:
                raise DPConfigError("dp.target_epsilon needs a finite trainer.max_epochs to plan the noise for")
            gsm, opt, _ = engine.make_private_with_epsilon(
                **common, target_epsilon=config.target_epsilon, target_delta=config.delta, epochs=epochs)
        else:
            gsm, opt, _ = engine.make_private(**common, noise_multiplier=config.noise_multiplier)
    return DPState(gsm, opt, engine, config, sample_rate=1.0 / len(data_loader))


def check_trainer_for_dp(trainer: Any) -> None:
    """Refuse trainer settings that DP-SGD cannot honour (gradient accumulation, Lightning's gradient clipping)."""
    accumulate = getattr(trainer, "accumulate_grad_batches", 1)
    if accumulate != 1:
        raise DPConfigError(
            f"trainer.accumulate_grad_batches={accumulate} cannot be used with DP-SGD: each step's batch is one Poisson "
            "draw, which the accountant counts as one step; raise the datamodule's batch_size instead (it is the "
            "expected batch of a step, over all processes)"
        )
    clip = getattr(trainer, "gradient_clip_val", None)
    if clip is not None and clip != 0:
        raise DPConfigError(
            f"trainer.gradient_clip_val={clip} cannot be used with DP-SGD: Opacus already clips each example's gradient "
            "to dp.max_grad_norm, and Lightning's clipping of the summed gradient would be overwritten by the noised one; "
            "remove trainer.gradient_clip_val (set max_grad_norm instead)"
        )


def check_strategy_for_dp(trainer: Any) -> None:
    """With more than one process, DP-SGD needs privgan's ``dp_ddp*`` strategy (DPDDP model wrapper)."""
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

    if getattr(trainer, "world_size", 1) <= 1 or isinstance(trainer.strategy.model, DPDDP):
        return
    raise DPConfigError(
        f"trainer.strategy={type(trainer.strategy).__name__} runs {trainer.world_size} processes, but DP-SGD needs "
        "privgan's DP strategy there: set trainer.strategy to 'dp_ddp' (torchrun / SLURM / one script), "
        "'dp_ddp_spawn' or 'dp_ddp_fork' (privgan.strategies.DPDDPStrategy). Plain DDP all-reduces every step's "
        "un-noised gradient and leaves Opacus to think it runs alone"
    )


def make_private_in_trainer(
    trainer: Any,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: DPSGD,
    *,
    accountant_state: dict | None = None,
) -> DPState:
    """``make_private`` from a LightningModule's configure_optimizers, Poisson-sampling the trainer's datamodule.

    Refuses ``trainer.accumulate_grad_batches`` > 1 and ``trainer.gradient_clip_val``. On several
    processes (privgan's ``dp_ddp*`` strategies, :mod:`privgan.strategies`) the datamodule's batch
    size stays the expected *global* batch, so σ, the sample rate and ε do not depend on the number
    of processes: each rank draws its own Poisson shard (:func:`privgan.defences.distributed.poisson_shard_loader`,
    seeded by the datamodule's seed, the rank and the epoch), empty batches included, Lightning's
    distributed sampler is turned off, and Opacus's distributed optimizer adds the noise once.

    Any LightningDataModule works: its plain ``train_dataloader()`` plans the sample rate, then
    ``train_dataloader`` on the datamodule *instance* is replaced by one that returns Opacus's
    ``DPDataLoader.from_data_loader(original())`` while the datamodule is attached to ``trainer``.
    Lightning 2.x calls configure_optimizers in strategy setup and requests the train loader
    after it (``fit_loop.setup_data``), so training runs on the Poisson batches the accountant
    assumes. Draws are seeded by the datamodule's ``seed`` hyper-parameter if it has one (else
    torch's global RNG). A restored accountant (from a checkpoint) continues the ε history.
    """
    dm = trainer.datamodule
    if dm is None:
        raise DPConfigError(
            "DP-SGD needs Poisson sampling of the training data: pass it as a LightningDataModule "
            "(trainer.fit(model, datamodule=...)), whose train_dataloader privgan then wraps"
        )
    from opacus.data_loader import DPDataLoader

    from privgan.defences import distributed as dist_dp

    check_trainer_for_dp(trainer)
    world_size = int(getattr(trainer, "world_size", 1))
    if world_size > 1:
        check_strategy_for_dp(trainer)
        dist_dp.turn_off_distributed_sampler(trainer)
    plain = getattr(dm.train_dataloader, "privgan_plain", dm.train_dataloader)  # a datamodule wrapped by an earlier fit
    seed = dm.hparams.get("seed")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    identities = getattr(dm, "train_identities", None)
    if config.unit == "identity":
        return _identity_private_in_trainer(trainer, dm, plain, model, optimizer, config, identities, generator,
                                            accountant_state)
    state = make_private(model, optimizer, plain(), config, epochs=trainer.max_epochs, distributed=world_size > 1)
    if identities is not None and len(identities):
        state.largest_identity = int(torch.bincount(torch.unique(torch.as_tensor(identities), return_inverse=True)[1]).max())
    rank = int(getattr(trainer, "global_rank", 0))

    def train_dataloader() -> DataLoader:
        if dm.trainer is not trainer:
            return plain()
        if world_size > 1:
            return dist_dp.poisson_shard_loader(plain(), rank=rank, world_size=world_size, seed=seed)
        return DPDataLoader.from_data_loader(plain(), generator=generator)

    train_dataloader.privgan_plain = plain
    dm.train_dataloader = train_dataloader
    if accountant_state is not None:
        state.engine.accountant.load_state_dict(accountant_state)
    return state


def _identity_private_in_trainer(trainer: Any, dm: Any, plain: Any, model: nn.Module, optimizer: torch.optim.Optimizer,
                                 config: DPSGD, identities: Any, generator: torch.Generator | None,
                                 accountant_state: dict | None) -> DPState:
    """``make_private_in_trainer`` with ``unit: identity``: whole people per Poisson draw, clipped per person."""
    from types import SimpleNamespace

    from privgan.defences.identity_dp import IdentityLabelError, identity_private_in_loop

    if int(getattr(trainer, "world_size", 1)) > 1:
        raise DPConfigError("dp.unit: identity runs in one process: person-level Poisson shards over several processes "
                            "are not built yet; use trainer.devices 1, or dp.unit: photo with the dp_ddp strategy")
    if identities is None:
        raise IdentityLabelError(
            f"dp.unit: identity needs the person each training photo shows, and {type(dm).__name__} has no "
            "train_identities (the identity of each item of its train_dataloader's dataset, in order): add that "
            "property, or use dp.unit: photo")
    state, loader = identity_private_in_loop(
        model, optimizer, plain(), identities, noise_multiplier=config.noise_multiplier, target_epsilon=config.target_epsilon,
        max_grad_norm=config.max_grad_norm, delta=config.delta, accountant=config.accountant,
        identities_per_step=config.identities_per_step, epochs=trainer.max_epochs, generator=generator)
    if accountant_state is not None:
        state.accountant.load_state_dict(accountant_state)

    def train_dataloader() -> DataLoader:
        return loader if dm.trainer is trainer else plain()

    train_dataloader.privgan_plain = plain
    dm.train_dataloader = train_dataloader
    return DPState(state.grad_sample_module, state.optimizer, SimpleNamespace(accountant=state.accountant), config,
                   sample_rate=state.sample_rate, largest_identity=state.largest_identity)
