"""``dp_ddp`` strategies: Lightning's DDP whose model wrapper is Opacus's DPDDP when the fit trains with DP-SGD.

Importing this module registers ``dp_ddp`` (launch by torchrun / SLURM / one script, like ``ddp``),
``dp_ddp_spawn`` and ``dp_ddp_fork`` with Lightning, so a recipe can say ``trainer.strategy: dp_ddp``
(privgan's modules and ``DPSGDCallback`` import it).
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from torch import nn

from privgan.defences.distributed import broadcast_buffers, broadcast_parameters, dp_in_use


class DPDDPStrategy(DDPStrategy):
    """Lightning's DDPStrategy (same arguments), but under DP-SGD the model is wrapped in Opacus's DPDDP.

    Torch's DistributedDataParallel all-reduces every parameter's gradient during backward: under
    DP-SGD those are the un-noised gradients, which Opacus then overwrites, so the communication is
    wasted and raw gradients cross the wire. Opacus's DPDDP only makes the ranks start equal (it
    broadcasts rank 0's parameters; buffers are broadcast here too) and leaves the sync to its
    DistributedDPOptimizer, which privgan selects (see :func:`privgan.defences.dp.make_private`):
    clipped per-example gradients are summed on every rank, noise is added on rank 0 only, and one
    all-reduce gives every rank the same noised mean. Without DP the strategy is plain DDP, except for a
    module with ``syncs_own_gradients = True`` (privgan's GAN), which is left unwrapped and syncs itself.
    """

    def _setup_model(self, model: nn.Module) -> nn.Module:
        trainer = getattr(self.lightning_module, "_trainer", None)
        if not dp_in_use(trainer, self.lightning_module):
            if getattr(self.lightning_module, "syncs_own_gradients", False):
                # e.g. privgan's GAN: two backward passes a step that share D, which torch's DDP reducer refuses;
                # the module all-reduces its own gradients, so the ranks only need to start equal
                broadcast_parameters(model)
                broadcast_buffers(model)
                return model
            return super()._setup_model(model)
        from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

        wrapped = DPDDP(model)  # broadcasts rank 0's parameters
        broadcast_buffers(model)
        return wrapped

    def configure_ddp(self) -> None:
        from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

        self.model = self._setup_model(self.model)
        if not isinstance(self.model, DPDDP):
            self._register_ddp_hooks()  # DDP communication hooks need torch's DDP

    def teardown(self) -> None:
        from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

        if isinstance(self.model, DPDDP):
            self.model = self.lightning_module  # unwrap, as DDPStrategy does for its own wrapper
        super().teardown()

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        for name, start_method in (("dp_ddp", "popen"), ("dp_ddp_spawn", "spawn"), ("dp_ddp_fork", "fork")):
            if name not in strategy_registry:
                strategy_registry.register(
                    name, cls, description=f"privgan DDP with Opacus's DPDDP wrapper under DP-SGD, start_method '{start_method}'",
                    start_method=start_method)


DPDDPStrategy.register_strategies(StrategyRegistry)

#: Names this module registers with Lightning.
STRATEGY_NAMES = ("dp_ddp", "dp_ddp_spawn", "dp_ddp_fork")

__all__ = ["DPDDPStrategy", "STRATEGY_NAMES"]
