"""LightningModule: DCGAN-style face GAN with EMA generator, hinge / non-saturating loss and DP-SGD on D."""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from privgan.defences.dp import DPSGD, DPConfigError, DPState, as_dpsgd, make_dp_compatible, make_private_in_trainer
from privgan.defences.distributed import all_reduce_mean_grads, broadcast_buffers
from privgan.modules.dp_lifecycle import DPLifecycleMixin
from privgan.validation import check_choice, check_int, check_number
from privgan.models.gan import DISCRIMINATOR_NORMS, GENERATOR_NORMS, IMAGE_SIZES, Discriminator, ExportedGenerator, Generator

LossRows = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _hinge_d(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return F.relu(1.0 - real), F.relu(1.0 + fake)


def _hinge_g(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def _ns_d(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return F.softplus(-real), F.softplus(fake)


def _ns_g(fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean()


#: Adversarial losses by name: (per-row discriminator losses on real / fake logits, generator loss).
GAN_LOSSES: dict[str, tuple[LossRows, Callable[[torch.Tensor], torch.Tensor]]] = {
    "hinge": (_hinge_d, _hinge_g),
    "non_saturating": (_ns_d, _ns_g),
}


#: Where a checkpoint keeps the GAN's count of D steps (so a resumed fit keeps its n_critic rhythm).
D_STEPS_KEY = "privgan_gan_d_steps"


class GAN(DPLifecycleMixin, L.LightningModule):
    """Unconditional face GAN; ``sample(n, generator)`` draws from the EMA generator in [0, 1].

    Manual optimisation: per batch one discriminator step on ``cat[real, fake]`` (the fake half
    as large as the real, possibly Poisson-sampled and empty, batch), and one generator step
    every ``n_critic`` batches (DP-GANs train D more per G step: each D step is where privacy is
    spent, and a noisier D needs more of them).
    With ``dp`` only the discriminator's optimizer is made private (Opacus DP-SGD): D is the only
    network that sees real images, so G and its samples are private by post-processing. Under
    DP each row of the D batch is one per-sample gradient (real rows are the records; fake rows
    are data-independent given the past releases), and the generator step runs D with its
    per-sample hooks off and its parameters frozen so no G-step gradient reaches D's update.
    On several processes under DP (strategy ``dp_ddp*``) D's gradients are synced by Opacus's
    distributed optimizer (noise once), G's are averaged over the global batch by privgan, and
    every rank takes both steps on every batch, empty ones included. Without DP (strategy ``dp_ddp*``
    too) both networks' gradients are averaged over the global batch by privgan.
    """

    #: Two backward passes a step share D, which torch's DDP reducer refuses: on several processes the GAN
    #: all-reduces its own gradients, and privgan's ``dp_ddp`` strategies leave it unwrapped (see docs/scaling.md).
    syncs_own_gradients = True

    def on_fit_start(self) -> None:
        """Refuse torch's DDP wrapper (Lightning's ``ddp`` / ``ddp_spawn``) with a message naming the fix."""
        from torch.nn.parallel import DistributedDataParallel

        if isinstance(self.trainer.strategy.model, DistributedDataParallel):
            raise ValueError("trainer.strategy: the GAN syncs its own gradients on several processes (two backward passes "
                             "a step share D, which torch's DDP reducer refuses); use privgan's dp_ddp, dp_ddp_spawn or "
                             "dp_ddp_fork (with or without DP)")
        super().on_fit_start()


    def __init__(
        self,
        *,
        image_size: int = 32,
        latent_dim: int = 128,
        g_width: int = 64,
        d_width: int = 64,
        g_norm: str = "batch",
        d_norm: str | None = None,
        loss: str = "hinge",
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        ema_decay: float = 0.999,
        r1_gamma: float = 0.0,
        augment_flip: bool = True,
        n_critic: int = 1,
        dp: DPSGD | None = None,
    ) -> None:
        super().__init__()
        dp = as_dpsgd(dp)  # a checkpoint's hyper-parameters store it as a plain dict
        owner = "GAN"
        check_choice(owner, "loss", loss, GAN_LOSSES)
        check_choice(owner, "image_size", image_size, IMAGE_SIZES)
        check_int(owner, "latent_dim", latent_dim, minimum=1)
        check_int(owner, "g_width", g_width, minimum=1)
        check_int(owner, "d_width", d_width, minimum=1)
        check_choice(owner, "g_norm", g_norm, GENERATOR_NORMS)
        check_choice(owner, "d_norm", d_norm, (None, *DISCRIMINATOR_NORMS))
        check_number(owner, "lr_g", lr_g, minimum=0.0, inclusive=False)
        check_number(owner, "lr_d", lr_d, minimum=0.0, inclusive=False)
        if len(tuple(betas)) != 2:
            raise ValueError(f"GAN betas (recipe key model.init_args.betas) must be two numbers in [0, 1), got {betas!r}")
        for b in betas:
            check_number(owner, "betas", b, minimum=0.0, maximum=1.0)
        check_number(owner, "ema_decay", ema_decay, minimum=0.0, maximum=1.0)
        check_number(owner, "r1_gamma", r1_gamma, minimum=0.0)
        check_int(owner, "n_critic", n_critic, minimum=1)
        if d_norm is None:
            d_norm = "group" if dp is not None else "spectral"
        if dp is not None and d_norm == "spectral":
            raise DPConfigError(
                "d_norm='spectral' cannot be trained with DP-SGD (Opacus refuses a trainable layer with buffers); "
                "use d_norm='group' or 'none' with dp"
            )
        if dp is not None and r1_gamma > 0:
            raise DPConfigError("r1_gamma > 0 needs a double backward through D, which Opacus's per-sample gradients do not support; set r1_gamma=0 with dp")
        self.automatic_optimization = False
        self.save_hyperparameters(ignore=["dp"])
        # a plain dict, so checkpoints load with torch.load(weights_only=True)
        self.hparams.dp = asdict(dp) if dp is not None else None
        self.hparams.d_norm = d_norm
        self.dp_config = dp
        self.generator = Generator(image_size=image_size, latent_dim=latent_dim, width=g_width, norm=g_norm)
        disc = Discriminator(image_size=image_size, width=d_width, norm=d_norm)
        self.discriminator = make_dp_compatible(disc) if dp is not None else disc
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self.d_steps = 0  # D steps of this fit; kept in the checkpoint (D_STEPS_KEY), not in the weights
        self._dp: DPState | None = None


    # -- the SampleableGenerator protocol --------------------------------------------------------
    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n x latent_dim standard normal codes, drawn on ``generator``'s device, returned on the module's."""
        device = generator.device if generator is not None else self.device
        return torch.randn(n, self.hparams.latent_dim, generator=generator, device=device).to(self.device)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        """Images in [0, 1] from latent codes, through the EMA generator in eval mode."""
        self.generator_ema.eval()
        out = [((self.generator_ema(z[i : i + batch_size].to(self.device)) + 1) * 0.5).clamp(0, 1) for i in range(0, len(z), batch_size)]
        return torch.cat(out) if out else torch.empty(0, 3, self.hparams.image_size, self.hparams.image_size, device=self.device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples (N x 3 x H x W in [0, 1]) of the EMA generator; seeded by ``generator``."""
        return self.generate(self.sample_latent(n, generator))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generate(z)

    @torch.no_grad()
    def discriminator_scores(self, images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        """D's logit per image in [0, 1] (eval mode, no grad): LOGAN's white-box membership score."""
        d = self.discriminator
        was = d.training
        d.eval()
        try:
            out = [d(images[i : i + batch_size].to(self.device) * 2 - 1).float().cpu() for i in range(0, len(images), batch_size)]
        finally:
            d.train(was)
        return torch.cat(out) if out else torch.empty(0)

    def export_generator(self, path: str | Path, *, format: str | None = None) -> Path:
        """The EMA generator as a file: z (N x latent_dim) -> images N x 3 x S x S in [0, 1].

        ``format="export"`` (the default, and what a ``.pt2`` path gets): a ``torch.export`` program
        with a dynamic batch size; load it with ``torch.export.load(path).module()``. Its
        ``latent_dim``, ``image_size`` and output range are in the program's extra file
        ``privgan.json``. ``format="torchscript"`` (the default for ``.pt`` / ``.ts`` paths, kept for
        readers that only take TorchScript) writes the deprecated TorchScript file.
        """
        import json
        import warnings

        p = Path(path)
        if format is None:
            format = "torchscript" if p.suffix in (".pt", ".ts", ".jit") else "export"
        if format not in ("export", "torchscript"):
            raise ValueError(f"export_generator format must be 'export' (torch.export, .pt2) or 'torchscript', got {format!r}")
        gen = ExportedGenerator(copy.deepcopy(self.generator_ema).cpu().eval()).eval()
        p.parent.mkdir(parents=True, exist_ok=True)
        if format == "torchscript":
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated.*")
                torch.jit.script(gen).save(str(p))
            return p
        z = torch.randn(64, int(self.hparams.latent_dim))  # batch size is dynamic; 64 is the hint readers may batch by
        program = torch.export.export(gen, (z,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        meta = {"latent_dim": int(self.hparams.latent_dim), "image_size": int(self.hparams.image_size), "output_range": "unit"}
        torch.export.save(program, str(p), extra_files={"privgan.json": json.dumps(meta)})
        return p

    # -- training ----------------------------------------------------------------------------------
    def _d_forward_module(self) -> nn.Module:
        return self._dp.grad_sample_module if self._dp is not None else self.discriminator

    def _check_finite(self, loss: torch.Tensor, which: str, batch_idx: int) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{which} loss is {loss.item()} at global step {self.global_step} (epoch {self.current_epoch}, "
                f"batch {batch_idx}, {which} step); lower lr_d / lr_g or use loss='hinge'"
            )

    def training_step(self, batch, batch_idx: int) -> None:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        opt_g, opt_d = self.optimizers()
        hp = self.hparams
        d_rows, g_loss_fn = GAN_LOSSES[hp.loss]
        n = x.shape[0]
        real = x * 2 - 1
        if hp.augment_flip and n:
            flip = torch.rand(n, device=real.device) < 0.5
            real = torch.where(flip.view(-1, 1, 1, 1), real.flip(-1), real)

        # discriminator step: fake batch as large as the (Poisson) real batch, one forward
        self.discriminator.requires_grad_(True)
        opt_d.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            fake = self.generator(self.sample_latent(n)) if n else real.new_zeros((0,) + real.shape[1:])
        use_r1 = hp.r1_gamma > 0 and self._dp is None and n > 0
        if use_r1:
            real = real.detach().requires_grad_(True)
        out = self._d_forward_module()(torch.cat([real, fake]))
        if n == 0:  # empty Poisson batch: DP-SGD still steps (noise only) so the accountant stays exact
            loss_d = out.sum() * 0.0
        else:
            l_real, l_fake = d_rows(out[:n], out[n:])
            loss_d = torch.cat([l_real, l_fake]).mean() if self._dp is not None else l_real.mean() + l_fake.mean()
            if use_r1:
                (grad,) = torch.autograd.grad(out[:n].sum(), real, create_graph=True)
                r1 = grad.pow(2).flatten(1).sum(1).mean()
                loss_d = loss_d + 0.5 * hp.r1_gamma * r1
                self.log("train/r1", r1.detach(), on_step=False, on_epoch=True, batch_size=n)
        self._check_finite(loss_d, "discriminator", batch_idx)
        self.manual_backward(loss_d)
        distributed = self.trainer.world_size > 1
        if distributed and self._dp is None:  # without DP nothing else syncs D (DP: Opacus's DistributedDPOptimizer)
            if all_reduce_mean_grads(list(self.discriminator.parameters()), n) > 0:
                opt_d.step()
        else:
            opt_d.step()
        if n == 0 and not distributed:
            return None
        if n:
            self.log("train/loss_d", (l_real.mean() + l_fake.mean()).detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
            self.log("train/d_real", out[:n].mean().detach(), on_step=False, on_epoch=True, batch_size=n)
            self.log("train/d_fake", out[n:].mean().detach(), on_step=False, on_epoch=True, batch_size=n)

        # n_critic D steps per G step, counted over the whole fit (the same count on every rank): counting batches of
        # an epoch never reached n_critic when an epoch had fewer batches (person-level DP at q = 0.5: 2 a epoch)
        self.d_steps += 1
        if self.d_steps % hp.n_critic:
            return None

        # generator step: D frozen, per-sample hooks off
        self.discriminator.requires_grad_(False)
        gsm = self._dp.grad_sample_module if self._dp is not None else None
        if gsm is not None:
            gsm.disable_hooks()
        try:
            opt_g.optimizer.zero_grad(set_to_none=True)
            if n:
                loss_g = g_loss_fn(self.discriminator(self.generator(self.sample_latent(n))))
                self._check_finite(loss_g, "generator", batch_idx)
                self.manual_backward(loss_g)
            stepped = self._sync_generator(n) if distributed else True
            if stepped:
                opt_g.step()
        finally:
            if gsm is not None:
                gsm.enable_hooks()
            self.discriminator.requires_grad_(True)
        if not stepped:
            return None
        if distributed:
            broadcast_buffers(self.generator)  # BatchNorm statistics: rank 0's, as DDP's broadcast_buffers keeps them
        self._update_ema()
        if n:
            self.log("train/loss_g", loss_g.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        return None

    def _sync_generator(self, n: int) -> bool:
        """On several processes (dp_ddp: no DDP reducer) average G's gradients over the global batch.

        Every rank joins, an empty batch with zero gradients; False (no rank steps G) when the global
        batch is empty. Under DP, D's gradients are Opacus's DistributedDPOptimizer's to sync.
        """
        return all_reduce_mean_grads(list(self.generator.parameters()), n) > 0

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[D_STEPS_KEY] = self.d_steps

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.d_steps = int(checkpoint.get(D_STEPS_KEY, 0))

    def on_init_from(self) -> None:
        """After ``InitFrom`` loaded another run's weights: the EMA warm-up restarts, so the sampler follows the
        fine-tune; with the public run's step count the EMA (decay 0.999) would hardly move in a short fine-tune, and
        its samples, FD and attacks would be the public GAN's."""
        self.ema_updates.zero_()

    @torch.no_grad()
    def _update_ema(self) -> None:
        """EMA of G's weights (warm-up: decay min(ema_decay, (1+t)/(10+t))); buffers copied as they are."""
        t = int(self.ema_updates)
        decay = min(self.hparams.ema_decay, (1 + t) / (10 + t))
        for pe, p in zip(self.generator_ema.parameters(), self.generator.parameters()):
            pe.lerp_(p.detach(), 1.0 - decay)
        for be, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            be.copy_(b)
        self.ema_updates += 1

    def configure_optimizers(self):
        hp = self.hparams
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=hp.lr_g, betas=tuple(hp.betas))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr_d, betas=tuple(hp.betas))
        if self.dp_config is None:
            return [opt_g, opt_d]
        self._dp = make_private_in_trainer(
            self.trainer, self.discriminator, opt_d, self.dp_config, accountant_state=self._restored_accountant
        )
        self.hparams.dp_noise_multiplier = self._dp.noise_multiplier
        return [opt_g, self._dp.optimizer]
