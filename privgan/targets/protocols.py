"""Small Protocols for what is attacked: split models and sampleable generators."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class SplitModel(Protocol):
    """A model cut in two: ``client`` runs on the device, its output crosses the network."""

    def client(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class SampleableGenerator(Protocol):
    """A generative model that draws ``n`` images (N x 3 x H x W in [0, 1])."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...
