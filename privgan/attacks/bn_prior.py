"""The batch-norm prior of data-free inversion (Yin et al. 2020 DeepInversion; Dong et al. 2021 for split features).

A client with batch norm carries the mean and variance of its training data at every normalised
layer. An attacker with the weights but no data asks reconstructions to reproduce them: the
distance of a batch's per-channel mean and variance to the stored running ones, summed over layers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def batch_norm_layers(modules: list[nn.Module]) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every batch-norm layer with running statistics under ``modules`` (none for group norm or norm-free clients)."""
    return [m for root in modules for m in root.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None and m.running_var is not None]


class BatchNormPrior:
    """Forward hooks that, while active, add up each BN layer's ‖μ_batch − μ_run‖₂ + ‖σ²_batch − σ²_run‖₂ (``take()``)."""

    def __init__(self, layers: list[nn.modules.batchnorm._BatchNorm]) -> None:
        if not layers:
            raise ValueError("the client has no batch-norm statistics (group norm or none): the data-free prior needs them")
        self.layers = layers
        self._terms: list[Tensor] = []
        self._handles: list[Any] = []

    def _hook(self, module: nn.modules.batchnorm._BatchNorm, inputs: tuple[Tensor, ...], _out: Tensor) -> None:
        x = inputs[0]
        dims = [0] + list(range(2, x.ndim))
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        self._terms.append(torch.linalg.vector_norm(mean - module.running_mean) +
                           torch.linalg.vector_norm(var - module.running_var))

    def __enter__(self) -> BatchNormPrior:
        self._handles = [m.register_forward_hook(self._hook) for m in self.layers]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles, self._terms = [], []

    def take(self) -> Tensor:
        """The summed distance of the forward passes since the last call (0 when none ran)."""
        out = torch.stack(self._terms).sum() if self._terms else torch.zeros(())
        self._terms = []
        return out
