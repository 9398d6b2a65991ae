"""Small Protocols for what plugs into privgan: embedders, split models, sampleable generators."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class IdentityEmbedder(Protocol):
    """Maps aligned face crops to L2-normalised identity embeddings.

    ``embed`` takes float N x 3 x H x W RGB in [0, 1], aligned to the ArcFace 112x112 template
    (any H = W; resized inside), and returns N x D unit vectors (cosine = dot product).
    """

    name: str

    def embed(self, faces: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class SplitModel(Protocol):
    """A model cut in two: ``client`` runs on the device, its output crosses the network."""

    def client(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class SampleableGenerator(Protocol):
    """A generative model that draws ``n`` images (N x 3 x H x W in [0, 1])."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...
