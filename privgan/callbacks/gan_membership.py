"""GanMembershipAttack: was this exact photo in the GAN's training set? LOGAN and GAN-Leaks during training."""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from privgan.attacks.gan_membership import gan_leaks_embedding, gan_leaks_pixel
from privgan.attacks.gan_membership import logan as logan_attack
from privgan.attacks.membership import MembershipScores
from privgan.attacks.reidentification import embed_batched
from privgan.callbacks.adapters import discriminator_scorer
from privgan.callbacks.base import AttackCallback, as_references, datamodule_of, run_dir
from privgan.callbacks.identity_match import SampleFn, draw_samples


class GanMembershipAttack(AttackCallback):
    """Member training photos vs photos of non-member identities, in equal numbers (at most ``max_candidates`` each).

    LOGAN white-box scores each photo by the discriminator (the module's
    ``discriminator_scores(images)``, or ``module.<discriminator_attr>`` fed images in
    ``output_range``; skipped with a warning otherwise); GAN-Leaks full
    black-box by the distance to the nearest of ``n_samples`` generated faces, in pixels and
    in face-embedding space. Keys: ``privacy/logan_auc``, ``privacy/ganleaks_pixel_auc``,
    ``privacy/ganleaks_embed_auc``, each with TPR at 0.1% / 1% FPR, CIs and counts. Raw scores
    go to ``gan_membership/epoch_NNN.csv`` with a ROC plot. Modules privgan did not write pass
    ``generator_attr`` / ``latent_dim`` / ``output_range`` or ``sample_fn``, and ``references``
    (a folder with ``members/`` and ``nonmembers/``) when their datamodule lacks the photos.
    """

    name = "gan_membership"

    def __init__(
        self,
        *,
        every_n_epochs: int = 1,
        n_samples: int = 1000,
        max_candidates: int = 500,
        logan: bool = True,
        ganleaks_pixel: bool = True,
        ganleaks_embed: bool = True,
        embedder: str = "sface",
        embedder_kwargs: dict[str, Any] | None = None,
        sample_fn: SampleFn | None = None,
        generator_attr: str | None = None,
        latent_dim: int | None = None,
        output_range: str = "tanh",
        discriminator_attr: str | None = None,
        references: Any = None,
        sample_batch_size: int = 256,
        n_boot: int = 500,
        save_scores: bool = True,
        seed: int = 0,
        out_dir: str | None = None,
        fail_on_error: bool = False,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, fail_on_error=fail_on_error)
        if not (logan or ganleaks_pixel or ganleaks_embed):
            raise ValueError("GanMembershipAttack needs at least one of logan, ganleaks_pixel, ganleaks_embed")
        self.n_samples, self.max_candidates = n_samples, max_candidates
        self.logan, self.ganleaks_pixel, self.ganleaks_embed = logan, ganleaks_pixel, ganleaks_embed
        self.embedder_name, self.embedder_kwargs = embedder, dict(embedder_kwargs or {})
        self.sample_fn, self.sample_batch_size = sample_fn, sample_batch_size
        self.generator_attr, self.latent_dim, self.output_range = generator_attr, latent_dim, output_range
        self.discriminator_attr = discriminator_attr
        self.references = references
        self.n_boot, self.save_scores, self.seed, self.out_dir = n_boot, save_scores, seed, out_dir
        self._embedder = None
        self._candidates: tuple[torch.Tensor, torch.Tensor] | None = None
        self._candidate_emb: tuple[torch.Tensor, torch.Tensor] | None = None
        self._warned_logan = False

    def _get_candidates(self, dm: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Seeded equal-size subsets of member training photos and non-member photos (fixed across runs)."""
        if self._candidates is None:
            mem = dm.train_images()
            non = dm.nonmember_images()[0] if hasattr(dm, "nonmember_images") else dm.nonmember_references()[0]
            n = min(len(mem), len(non), self.max_candidates)
            g = torch.Generator().manual_seed(self.seed)
            self._candidates = (mem[torch.randperm(len(mem), generator=g)[:n]], non[torch.randperm(len(non), generator=g)[:n]])
        return self._candidates

    def attack(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        pl_module.eval()
        samples = None
        if self.ganleaks_pixel or self.ganleaks_embed:
            samples = draw_samples(pl_module, self.n_samples, sample_fn=self.sample_fn, generator_attr=self.generator_attr,
                                   latent_dim=self.latent_dim, output_range=self.output_range, seed=self.seed,
                                   batch_size=self.sample_batch_size, who="GanMembershipAttack")
        if isinstance(self.references, (str, os.PathLike)):  # photos at the generator's resolution
            size = samples.shape[-1] if samples is not None else 64
            self.references = as_references(self.references, image_size=size)
        dm = datamodule_of(trainer, ("train_images", "nonmember_references"), self.references)
        mem, non = self._get_candidates(dm)
        if samples is not None and samples.shape[-2:] != mem.shape[-2:]:
            raise ValueError(f"samples are {tuple(samples.shape[-2:])} px but the candidate photos {tuple(mem.shape[-2:])}: "
                             "give reference photos at the generator's resolution")
        results: list[MembershipScores] = []
        if self.logan:
            scorer = discriminator_scorer(pl_module, self.discriminator_attr, self.output_range)
            if scorer is not None:
                results.append(logan_attack(scorer, mem, non))
            elif not self._warned_logan:
                rank_zero_warn(f"{type(pl_module).__name__} has no discriminator_scores(images) and no discriminator_attr "
                               "was given: LOGAN skipped")
                self._warned_logan = True
        if samples is not None:
            if self.ganleaks_pixel:
                results.append(gan_leaks_pixel(samples, mem, non))
            if self.ganleaks_embed:
                if self._embedder is None:
                    from privgan.faces.embedders import build_embedder

                    self._embedder = build_embedder(self.embedder_name, **self.embedder_kwargs)
                if self._candidate_emb is None:
                    self._candidate_emb = (embed_batched(self._embedder, mem), embed_batched(self._embedder, non))
                results.append(gan_leaks_embedding(embed_batched(self._embedder, samples), *self._candidate_emb))
        if not results:
            raise TypeError(f"no GAN membership attack could run on {type(pl_module).__name__}")
        metrics: dict[str, float] = {}
        for r in results:
            for k, v in r.metrics(n_boot=self.n_boot, seed=self.seed).items():
                metrics[f"privacy/{r.attack}_{k}"] = v
        if self.save_scores:
            self._save(trainer, results)
        return metrics

    def _save(self, trainer: L.Trainer, results: list[MembershipScores]) -> None:
        from privgan.callbacks.membership import save_scores_and_roc

        save_scores_and_roc(trainer, results, run_dir(trainer, self.out_dir) / "gan_membership", "privacy/gan_membership_roc")
