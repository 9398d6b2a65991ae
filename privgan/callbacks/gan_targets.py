"""What GAN attack callbacks share: how to reach a module's generator and discriminator, one sample bank a step."""

from __future__ import annotations

import dataclasses
from typing import Any

import lightning as L

from privgan.callbacks.base import AttackCallback, shared_bank
from privgan.targets.adapters import SampleFn, gan_target


class GanAttackCallback(AttackCallback):
    """An attack callback on a generator: ``sample_fn`` or ``generator_attr`` (+ ``latent_dim``, ``output_range``,
    ``latent_distribution``) for modules without ``sample(n, generator)``, ``discriminator_attr`` for LOGAN."""

    def __init__(self, *, sample_fn: SampleFn | None = None, generator_attr: str | None = None, latent_dim: int | None = None,
                 output_range: str = "tanh", latent_distribution: str = "normal", discriminator_attr: str | None = None,
                 sample_batch_size: int = 256, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sample_fn, self.generator_attr, self.latent_dim = sample_fn, generator_attr, latent_dim
        self.output_range, self.discriminator_attr, self.sample_batch_size = output_range, discriminator_attr, sample_batch_size
        self.latent_distribution = latent_distribution
        self.embedded_here = 0  # sample embeddings this process computed for other ranks' attacks (DDP share)

    def target(self, pl_module: Any) -> Any:
        return gan_target(pl_module, sample_fn=self.sample_fn, generator_attr=self.generator_attr, latent_dim=self.latent_dim,
                          output_range=self.output_range, discriminator_attr=self.discriminator_attr,
                          batch_size=self.sample_batch_size, latent_distribution=self.latent_distribution)

    def target_at(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Any:
        sampler = (id(self.sample_fn), self.generator_attr, self.latent_dim, self.output_range, self.sample_batch_size,
                   self.latent_distribution)
        return dataclasses.replace(self.target(pl_module), bank=shared_bank(trainer, pl_module, sampler))

    def bank_needs(self, epoch: int) -> list[tuple[int, int, str, dict]]:
        """The sample embeddings this run will read from the bank: (n_samples, seed, embedder, embedder_kwargs)."""
        c = self.run_config(epoch)
        return [(c.n_samples, c.seed, c.embedder, dict(c.embedder_kwargs or {}))]

    def share_work(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Under DDP: every rank embeds its block of the samples this attack needs, gathered into every rank's bank."""
        from privgan.callbacks.base import attack_mode
        from privgan.callbacks.ddp_coordination import share_embeddings
        from privgan.faces.embedders import get_embedder

        needs = self.bank_needs(trainer.current_epoch)
        if not needs:
            return
        target = self.target_at(trainer, pl_module)
        with attack_mode(pl_module):
            for n, seed, name, kwargs in needs:
                embedder = get_embedder(name, **kwargs)
                if target.embedding_key(n, embedder, seed=seed) in target.bank:  # another GAN attack shared it already
                    continue
                self.embedded_here += share_embeddings(self.name, target, n, seed, embedder, trainer.global_step)
