"""Model inversion against split computing: rebuild the client's input images from sent features.

Two attackers from the split-computing literature (He, Zhang, Lee 2019; Dong et al. 2021):
``whitebox_invert`` knows the client's weights and optimises an image whose features match the
observed ones; ``DecoderInversion`` ("inverse network") can only query the deployed client on
its own auxiliary images and trains a decoder from (transmitted features, image) pairs. Plain
tensor code: no Lightning needed.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from privgan.attacks.bn_prior import BatchNormPrior, batch_norm_layers
from privgan.attacks.linkage import link_features
from privgan.attacks.registry import register_attack
from privgan.attacks.result import Gallery, Result, Signal, merge_sub_attacks
from privgan.attacks.scoring import rate_signal
from privgan.attacks.reconstruction import (  # noqa: F401 - re-exported: the inversion API
    Client,
    Reconstructions,
    _attack_mode,
    cosine_lr,
    keep_best,
    _check_images,
    _client_modules,
    _grad_wrt,
    normalised_feature_loss,
    plateaued,
    total_variation,
)
from privgan.models.decoders import InverseDecoder

def whitebox_invert(
    client: Client,
    observed: Tensor,
    *,
    image_shape: tuple[int, int, int],
    steps: int = 400,
    lr: float = 0.05,
    tv_weight: float = 0.1,
    restarts: int = 1,
    init: str = "grey",
    generator: torch.Generator | None = None,
    originals: Tensor | None = None,
    bn_weight: float = 0.0,
) -> Reconstructions:
    """White-box inversion: Adam on images so client(x) matches the observed features.

    Images are parametrised as ``x = sigmoid(u)`` (always in [0, 1]) and all samples are
    optimised together; the objective per sample is ``normalised_feature_loss`` +
    ``tv_weight`` * ``total_variation``, with the learning rate cosine-annealed from ``lr`` to
    ~0 over ``steps``. Restart 0 starts from ``init`` ("grey": every pixel 0.5, or "random":
    uniform noise from ``generator``); later restarts start from uniform noise. Per sample, the
    restart with the lowest final feature loss is kept (observable to the attacker: originals
    are never used to choose). The client is put in eval mode with its parameters frozen, and
    only the images get gradients (``torch.autograd.grad``), so its weights, ``.grad``,
    ``requires_grad`` flags and training mode are the same afterwards. ``bn_weight`` > 0 adds
    the data-free batch-norm prior (``privgan.attacks.bn_prior``: the batch's statistics at every
    BN layer of the client pulled towards the stored running ones; attack name ``datafree``).
    """
    if init not in ("grey", "random"):
        raise ValueError(f"init must be 'grey' or 'random', got {init!r}")
    if steps < 0 or restarts < 1:
        raise ValueError(f"need steps >= 0 and restarts >= 1, got steps={steps}, restarts={restarts}")
    if originals is not None:
        _check_images(originals, image_shape, "originals")
    start = time.perf_counter()
    observed = observed.detach()
    n = observed.shape[0]
    dtype = observed.dtype if observed.is_floating_point() else torch.get_default_dtype()
    shape = (n, *image_shape)
    best_x = torch.full(shape, 0.5, dtype=dtype, device=observed.device)
    best_loss = torch.full((n,), math.inf, dtype=dtype, device=observed.device)
    curve: list[float] = []
    checkpoints = {int(steps * f) for f in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)} | {max(0, steps - 1)}
    bn = BatchNormPrior(batch_norm_layers(_client_modules(client))) if bn_weight > 0 else contextlib.nullcontext()
    with _attack_mode(client), bn:
        for r in range(restarts):
            if r == 0 and init == "grey":
                x0 = torch.full(shape, 0.5, dtype=dtype, device=observed.device)
            else:
                x0 = torch.rand(shape, generator=generator, dtype=dtype, device=observed.device)
            u = torch.logit(x0.clamp(1e-3, 1 - 1e-3)).requires_grad_(True)
            opt = torch.optim.Adam([u], lr=lr)
            for t in range(steps):
                cosine_lr(opt, lr, t, steps)
                x = torch.sigmoid(u)
                loss = normalised_feature_loss(client(x), observed).sum()
                if r == 0 and t in checkpoints:
                    curve.append(float(loss.detach()) / n)
                if bn_weight > 0:
                    loss = loss + bn_weight * n * bn.take()
                if tv_weight:
                    loss = loss + tv_weight * total_variation(x).sum()
                u.grad = _grad_wrt(loss, u)
                opt.step()
            with torch.no_grad():
                x = torch.sigmoid(u)
                final = normalised_feature_loss(client(x), observed).to(dtype)
                if bn_weight > 0:
                    bn.take()
                best_x, best_loss = keep_best(best_x, best_loss, x, final, r == 0)
    return Reconstructions(
        originals=None if originals is None else originals.detach(),
        reconstructions=best_x.detach(),
        attack="datafree" if bn_weight > 0 else f"whitebox_tv{tv_weight:g}",
        feature_loss=best_loss,
        seconds=time.perf_counter() - start,
        converged=plateaued(curve[-3:], tolerance=0.05),
        curve=tuple(curve),
    )


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG for a block without disturbing the caller's global RNG state."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class DecoderInversion:
    """Learned inversion ("inverse network", He et al. 2019): a decoder trained on the attacker's images.

    The attacker queries the deployed client on auxiliary images (disjoint identities), passes
    the features through ``transmit`` (the defence: clipping, noise), and fits an
    ``InverseDecoder`` on (transmitted features, image) pairs with MSE (+ ``l1_weight`` * L1)
    loss and Adam. A share ``val_fraction`` of the auxiliary images is held out: when its loss
    has not improved for ``patience`` epochs the learning rate drops tenfold, and after the
    second drop without improvement training stops (converged). ``epochs`` is the most it may
    train; stopping there while the held-out loss still falls is reported as not converged. The
    best held-out state is kept. Fresh ``transmit`` noise is drawn per batch. Training is seeded
    by ``seed`` and leaves the global RNG untouched.
    """

    def __init__(
        self,
        *,
        feature_shape: tuple[int, ...],
        image_shape: tuple[int, int, int],
        width: int = 32,
        epochs: int = 20,
        batch_size: int = 64,
        lr: float = 2e-3,
        l1_weight: float = 0.0,
        upsample: str = "nearest",
        val_fraction: float = 0.1,
        patience: int = 3,
        seed: int = 0,
    ) -> None:
        self.feature_shape = tuple(feature_shape)
        self.image_shape = tuple(image_shape)
        self.width = width
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.l1_weight = l1_weight
        self.upsample = upsample
        self.val_fraction = val_fraction
        self.patience = patience
        self.seed = seed

    @torch.no_grad()
    def _features(self, client: Client, images: Tensor) -> Tensor:
        with _attack_mode(client):
            return torch.cat([client(b) for b in images.split(self.batch_size)])

    def fit(self, client: Client, aux_images: Tensor, *, transmit: Client | None = None) -> DecoderInversion:
        """Train ``decoder_`` on (transmit(client(x)), x) for the attacker's ``aux_images``."""
        _check_images(aux_images, self.image_shape, "aux_images")
        start = time.perf_counter()
        aux_images = aux_images.detach()
        feats = self._features(client, aux_images)
        if feats[0].numel() != math.prod(self.feature_shape):
            raise ValueError(f"client features {tuple(feats.shape[1:])} do not match feature_shape {self.feature_shape}")
        feats = feats.reshape(len(feats), *self.feature_shape)
        device = aux_images.device
        losses: list[float] = []
        val_losses: list[float] = []
        with _seeded(self.seed, device):
            order = torch.randperm(len(aux_images), device=device)
            n_val = min(len(aux_images) // 2, max(8, round(self.val_fraction * len(aux_images))))
            val, train = order[:n_val], order[n_val:]
            decoder = InverseDecoder(
                self.feature_shape, self.image_shape, width=self.width, upsample=self.upsample
            ).to(device=device, dtype=aux_images.dtype)
            opt = torch.optim.Adam(decoder.parameters(), lr=self.lr)
            best, best_state, bad, drops, self.converged_ = math.inf, None, 0, 0, False
            for _ in range(self.epochs):
                decoder.train()
                total, count = 0.0, 0
                for idx in train[torch.randperm(len(train), device=device)].split(self.batch_size):
                    if len(idx) < 2:  # batch norm needs two samples
                        continue
                    loss = self._loss(decoder, feats[idx], aux_images[idx], transmit)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                    count += len(idx)
                losses.append(total / max(1, count))
                decoder.eval()
                with torch.no_grad():
                    val_losses.append(float(self._loss(decoder, feats[val], aux_images[val], transmit)))
                if val_losses[-1] < best * (1 - 1e-3):
                    best, bad = val_losses[-1], 0
                    best_state = {k: v.detach().clone() for k, v in decoder.state_dict().items()}
                else:
                    bad += 1
                if bad >= self.patience:
                    drops, bad = drops + 1, 0
                    if drops > 2:
                        self.converged_ = True
                        break
                    for group in opt.param_groups:
                        group["lr"] *= 0.1
            if not self.converged_:  # out of epochs: converged only if the held-out loss had levelled off
                self.converged_ = plateaued(val_losses[-self.patience - 1 :], tolerance=0.01)
            if best_state is not None:
                decoder.load_state_dict(best_state)
        decoder.eval()
        self.decoder_ = decoder
        self.client_ = client
        self.train_loss_ = losses
        self.val_loss_ = val_losses
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _loss(self, decoder: nn.Module, feats: Tensor, images: Tensor, transmit: Client | None) -> Tensor:
        if transmit is not None:
            with torch.no_grad():
                feats = transmit(feats).reshape(feats.shape)
        out = decoder(feats)
        loss = F.mse_loss(out, images)
        return loss + self.l1_weight * F.l1_loss(out, images) if self.l1_weight else loss

    @torch.no_grad()
    def reconstruct(self, observed: Tensor, originals: Tensor | None = None) -> Reconstructions:
        """Decode observed (transmitted) features; feature loss re-queries the client on the output."""
        if not hasattr(self, "decoder_"):
            raise RuntimeError("call fit() before reconstruct()")
        if originals is not None:
            _check_images(originals, self.image_shape, "originals")
        start = time.perf_counter()
        observed = observed.detach().reshape(len(observed), *self.feature_shape)
        self.decoder_.eval()
        recon = torch.cat([self.decoder_(b) for b in observed.split(self.batch_size)])
        sent = self._features(self.client_, recon).reshape(observed.shape)
        return Reconstructions(
            originals=None if originals is None else originals.detach(),
            reconstructions=recon,
            attack=f"decoder_w{self.width}",
            feature_loss=normalised_feature_loss(sent, observed),
            seconds=time.perf_counter() - start,
            converged=self.converged_,
            curve=tuple(self.val_loss_),
        )


__all__ = [
    "DecoderInversion",
    "InversionConfig",
    "run_inversion",
    "Reconstructions",
    "normalised_feature_loss",
    "total_variation",
    "whitebox_invert",
]


@dataclass(frozen=True)
class InversionConfig:
    """Settings of the split-inversion attack (white-box optimisation and a learned decoder).

    Targets are ``n_targets`` held-out photos, one identity after another. The decoder trains
    until its loss on held-out auxiliary faces levels off (at most ``decoder_epochs``); a
    sub-attack still improving at the end makes the Result not converged. Re-identification
    matches each reconstruction against ``gallery_per_identity`` member photos per identity at a
    cosine threshold whose *pair* false-accept rate is ``pair_far`` (calibrated on impostor pairs
    of the auxiliary identities unless ``reid_threshold`` is given). ``linkage``: also link each
    target's transmitted features to the member whose photos' features are closest, without
    pixels (``privgan.attacks.linkage``; signal ``linkage_top1``, chance 1 / identities).
    ``prior``: also search a face prior's codes (``privgan.attacks.prior_inversion``): the path of a
    face GAN that knows no one of the study (a privgan GAN ``.ckpt`` such as the public GAN of
    ``recipes/gan_lfw_public.yaml``, or a ``GAN.export_generator`` file; sub-attack ``ganprior``), or
    ``"eigenfaces"`` (``prior_components`` principal directions of the auxiliary photos; sub-attack
    ``eigenprior``). ``prior_restarts`` random starts, plus an encoder guess (``prior_encoder``).
    ``datafree``: where the client has batch norm, also the white-box search with the data-free
    batch-norm prior (``datafree_bn_weight``; Dong et al. 2021); a note says when it does not apply.
    """

    n_targets: int = 32
    whitebox: bool = True
    whitebox_steps: int = 300
    whitebox_lr: float = 0.05
    tv_weights: tuple[float, ...] = (0.05, 0.3)
    restarts: int = 1
    decoder: bool = True
    decoder_epochs: int = 40
    decoder_width: int = 32
    embedder: str = "sface"
    embedder_kwargs: dict | None = None
    reid_threshold: float | None = None
    pair_far: float = 1e-3
    gallery_per_identity: int = 5
    n_gallery: int = 8
    linkage: bool = True
    datafree: bool = True
    datafree_bn_weight: float = 0.1
    prior: str | None = None
    prior_components: int = 300
    prior_steps: int = 300
    prior_restarts: int = 4
    prior_lr: float = 0.05
    prior_latent_weight: float = 1e-3
    prior_encoder: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.whitebox or self.decoder or self.prior):
            raise ValueError("inversion needs whitebox=True, decoder=True or a prior")
        if self.prior is not None and not isinstance(self.prior, str):
            raise ValueError(f"prior must be 'eigenfaces' or the path of a face GAN (.ckpt, .pt2, TorchScript), got {self.prior!r}")
        if not 0 < self.pair_far < 1:
            raise ValueError(f"pair_far must be in (0, 1), got {self.pair_far}")
        object.__setattr__(self, "tv_weights", tuple(self.tv_weights))


def inversion_targets(heldout: Any, n: int) -> tuple[Tensor, Tensor]:
    """Up to ``n`` held-out photos, taking one identity after another (round robin)."""
    per_id = [(heldout.labels == c).nonzero().squeeze(1).tolist() for c in heldout.labels.unique()]
    order: list[int] = []
    while len(order) < min(n, len(heldout)):
        for lst in per_id:
            if lst and len(order) < n:
                order.append(lst.pop(0))
    idx = torch.tensor(order, dtype=torch.long)
    return heldout.images[idx], heldout.labels[idx]


def _gallery_of(members: Any, per_identity: int) -> tuple[Tensor, Tensor]:
    keep = torch.cat([(members.labels == c).nonzero().squeeze(1)[:per_identity] for c in members.labels.unique()])
    return members.images[keep], members.labels[keep]


@register_attack("inversion", config=InversionConfig, target="split", needs=("members", "heldout", "auxiliary"))
def run_inversion(target: Any, view: Any, config: InversionConfig) -> Result:
    """Rebuild held-out faces from what the server receives, scored by PSNR, SSIM and re-identification."""
    from privgan.attacks.reidentification import identify
    from privgan.faces.embedders import embed_batched, get_embedder
    from privgan.metrics.thresholds import impostor_scores, threshold_at_far

    embedder = get_embedder(config.embedder, **(config.embedder_kwargs or {}))
    gx, gy = _gallery_of(view.members, config.gallery_per_identity)
    gallery = embed_batched(embedder, gx)
    notes: list[str] = []
    threshold = config.reid_threshold
    if threshold is None:
        aux_emb = view.embeddings("auxiliary", embedder)
        threshold = threshold_at_far(impostor_scores(aux_emb, view.auxiliary.labels), config.pair_far)
    x, y = inversion_targets(view.heldout, config.n_targets)
    device = target.device
    observed = target.observe(x, seed=config.seed)
    x = x.to(device)
    client = target.client
    recons: list[tuple[str, Reconstructions]] = []
    if config.whitebox:
        for tv in config.tv_weights:
            recons.append((f"whitebox_tv{tv:g}", whitebox_invert(
                client, observed, image_shape=tuple(x.shape[1:]), steps=config.whitebox_steps, lr=config.whitebox_lr,
                tv_weight=tv, restarts=config.restarts, originals=x,
                generator=torch.Generator(device=device).manual_seed(config.seed))))
    if config.decoder:
        noise = torch.Generator(device=device).manual_seed(config.seed + 1)
        dec = DecoderInversion(feature_shape=tuple(observed.shape[1:]), image_shape=tuple(x.shape[1:]),
                               width=config.decoder_width, epochs=config.decoder_epochs, seed=config.seed,
                               ).fit(client, view.auxiliary.images.to(device), transmit=lambda f: target.transmit(f, noise))
        recons.append(("decoder", dec.reconstruct(observed, originals=x)))
    knowledge = "white-box client" if config.whitebox else "query access to the client, auxiliary faces"
    if config.datafree:
        if batch_norm_layers(_client_modules(client)):
            recons.append(("datafree", whitebox_invert(
                client, observed, image_shape=tuple(x.shape[1:]), steps=config.whitebox_steps, lr=config.whitebox_lr,
                tv_weight=min(config.tv_weights, default=0.05), restarts=config.restarts, originals=x,
                generator=torch.Generator(device=device).manual_seed(config.seed), bn_weight=config.datafree_bn_weight)))
            knowledge += "; data-free: the client's weights and batch-norm statistics, no data"
        else:
            notes.append("data-free inversion not applicable: the client keeps no batch-norm statistics (group norm or none)")
    if config.prior:
        from privgan.attacks.prior_inversion import prior_sub_attack

        name, rec, source = prior_sub_attack(config, target, view, observed, x, device)
        recons.append((name, rec))
        knowledge += f"; face prior: {source}"
    curves = {f"{name}_loss_{i}": v for name, r in recons for i, v in enumerate(r.curve)}
    not_converged = [name for name, r in recons if not r.converged]
    if not_converged:
        notes.append(f"{', '.join(not_converged)} did not converge (loss still falling at the end): a stronger attack "
                     "could do better, so silence here is not 'no leak found' (raise decoder_epochs / whitebox_steps)")
    originals = identify(embed_batched(embedder, x.cpu()), y, gallery, gy, threshold=threshold)
    n_ids = originals.n_identities
    base = originals.hits.float().mean().item()
    subs: dict[str, dict[str, Signal]] = {}
    for name, r in recons:
        q = r.metrics()
        rid = identify(embed_batched(embedder, r.reconstructions.detach().cpu()), y, gallery, gy, threshold=threshold)
        subs[name] = {
            "reid_top1": rate_signal(rid.predicted == y, 1.0 / n_ids),
            "reid_rate": rate_signal(rid.hits, config.pair_far),
            "psnr_db": Signal(q["psnr_db"]),
            "ssim": Signal(q["ssim"]),
        }
    best, signals = merge_sub_attacks(subs, "reid_top1")
    if config.linkage:  # features alone: the gallery people's photos pushed through the client, noise included
        linked = link_features(observed.cpu(), target.observe(gx, seed=config.seed + 2).cpu(), gy)
        signals = {**signals, "linkage_top1": rate_signal(linked == y, 1.0 / n_ids)}
    if base < 0.5:
        notes.append(f"only {base:.0%} of the real held-out photos pass the re-id threshold {threshold:.3f}: "
                     "verified re-id understates the leak; read reid_top1")
    relative = {f"{name}_reid_relative": sig["reid_rate"].value / base for name, sig in subs.items() if base > 0}
    values = {"reid_threshold": float(threshold), "reid_rate_originals": base, **relative,
              "reid_top1_originals": float((originals.predicted == y).float().mean()), "n_identities": float(n_ids),
              "n_targets": float(len(y)), **curves,
              **{f"{name}_seconds_per_face": r.seconds / max(1, len(y)) for name, r in recons}}
    n = config.n_gallery
    gallery_rows = tuple([x[:n].cpu()] + [r.reconstructions[:n].detach().cpu() for _, r in recons])
    captions = ("original (held-out)",) + tuple(
        f"{name}: PSNR {subs[name]['psnr_db'].value:.1f} dB, top-1 {subs[name]['reid_top1'].value:.2f}" for name, _ in recons)
    return Result(attack="inversion", signals=signals, headline="reid_top1", best=best, converged=not not_converged, values=values,
                  images={"gallery": Gallery(gallery_rows, captions)} if n > 0 else {}, notes=tuple(notes),
                  knowledge=knowledge)
