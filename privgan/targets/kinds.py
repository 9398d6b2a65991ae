"""What an attack runs against: a GAN's sampler, a split model's client, a classifier's logits.

Small frozen records over callables, so any model (privgan's, Lightning or plain PyTorch, a
TorchScript or ``torch.export`` file) can be attacked; ``privgan.targets.adapters`` builds them
from modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

Sampler = Callable[[int, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class GanTarget:
    """A generator: ``sample(n, generator)`` -> N x 3 x H x W in [0, 1]; LOGAN needs ``discriminator_scores``.

    Samples and their embeddings are drawn once per (n, seed) and kept in ``bank``, so every
    GAN attack on the same target state shares them.
    """

    sample: Sampler
    discriminator_scores: Callable[[torch.Tensor], torch.Tensor] | None = None
    device: torch.device = torch.device("cpu")
    batch_size: int = 256
    bank: dict = field(default_factory=dict, repr=False, compare=False)

    @torch.no_grad()
    def draw(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """``n`` samples on CPU, the same latent points for the same seed (so one follows them through training)."""
        key = ("samples", n, seed)
        if key not in self.bank:
            g = torch.Generator(device=self.device).manual_seed(seed)
            out = []
            for i in range(0, n, self.batch_size):
                x = self.sample(min(self.batch_size, n - i), g).detach().float().cpu()
                if x.ndim != 4 or x.shape[1] != 3:
                    raise ValueError(f"samples must be N x 3 x H x W, got {tuple(x.shape)}")
                if len(x) and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
                    raise ValueError(f"samples must lie in [0, 1] (got [{x.min():.2f}, {x.max():.2f}]); "
                                     "map tanh outputs with (x + 1) / 2 (output_range='tanh')")
                out.append(x.clamp(0, 1))
            self.bank[key] = torch.cat(out)
        return self.bank[key]

    def saturation_note(self, n: int, *, seed: int = 0, limit: float = 0.05) -> str | None:
        """A warning when more than ``limit`` of the samples' pixels sit at 0 or 1 (wrong latent distribution or range)."""
        x = self.draw(n, seed=seed)
        share = float(((x <= 1e-3) | (x >= 1 - 1e-3)).float().mean())
        if share <= limit:
            return None
        return (f"{share:.1%} of the sample pixels are saturated at 0 or 1: is the latent distribution right "
                "(latent_distribution: normal | uniform) and the output range (output_range: tanh | unit)?")

    def embedding_key(self, n: int, embedder: Any, *, seed: int = 0) -> tuple:
        """Where ``embeddings(n, embedder, seed)`` is kept in ``bank`` (DDP ranks fill it block by block)."""
        return ("embeddings", n, seed, getattr(embedder, "name", type(embedder).__name__))

    def embeddings(self, n: int, embedder: Any, *, seed: int = 0) -> torch.Tensor:
        """Identity embeddings of ``draw(n, seed)``, computed once per embedder."""
        key = self.embedding_key(n, embedder, seed=seed)
        if key not in self.bank:
            from privgan.faces.embedders import embed_batched

            self.bank[key] = embed_batched(embedder, self.draw(n, seed=seed))
        return self.bank[key]


@dataclass(frozen=True)
class SplitTarget:
    """A split model: ``client(x)`` is what the device computes, ``transmit(z, generator)`` what the server receives.

    ``modules`` are the networks behind ``client`` (put in eval mode with frozen weights while attacked).
    """

    client: Callable[[torch.Tensor], torch.Tensor]
    transmit: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] = lambda z, generator=None: z
    device: torch.device = torch.device("cpu")

    @torch.no_grad()
    def observe(self, images: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
        """What the server receives for ``images``: client features through the (seeded) defence."""
        g = torch.Generator(device=self.device).manual_seed(seed)
        return self.transmit(self.client(images.to(self.device)), g)


@dataclass(frozen=True)
class ClassifierTarget:
    """A classifier: ``logits(x)``; ``make_network()`` builds an untrained copy for shadow models (LiRA)."""

    logits: Callable[[torch.Tensor], torch.Tensor]
    make_network: Callable[[], nn.Module] | None = None
    lr: float = 1e-3
    device: torch.device = torch.device("cpu")
