"""InversionAttack: rebuild held-out faces from what the server receives, during training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch

from privgan.attacks.reidentification import embed_batched, identify, impostor_threshold
from privgan.callbacks.adapters import resolve_client
from privgan.callbacks.base import AttackCallback, as_references, datamodule_of, run_dir
from privgan.logging.local_files import image_grid, write_json
from privgan.logging.wandb_helpers import log_image


class InversionAttack(AttackCallback):
    """White-box optimisation and a learned decoder against a split model's transmitted features.

    Targets are ``n_targets`` held-out photos (never trained on), one identity after another.
    Each white-box setting (one per TV weight) and the decoder (trained on auxiliary identities
    through queries to the client, with the defence's noise) is scored by PSNR, SSIM and
    re-identification: a face embedder matches the reconstruction against member photos of the
    classifier identities at a threshold with false-accept rate ``far`` (calibrated on
    auxiliary-identity impostor pairs unless ``reid_threshold`` is given: a cosine, or the
    ``lfw_<embedder>.json`` that ``privgan faces eval-lfw`` wrote). The strongest attack
    per metric is reported as ``privacy/inversion_<metric>``; the re-id rate of the original
    photos is the ceiling (``privacy/inversion_reid_rate_originals``).

    Split models privgan did not write give ``split_layer``, the name of the sub-module whose
    output is transmitted (read with a forward hook), instead of a ``client(x)`` method, and
    ``references`` (a folder with ``members/``, ``heldout/`` and ``auxiliary/``, photos resized
    to ``image_size``) when their datamodule lacks them.
    """

    name = "inversion"

    def __init__(
        self,
        *,
        every_n_epochs: int = 1,
        n_targets: int = 32,
        whitebox: bool = True,
        whitebox_steps: int = 300,
        whitebox_lr: float = 0.05,
        tv_weights: Sequence[float] = (0.05, 0.3),
        restarts: int = 1,
        decoder: bool = True,
        decoder_epochs: int = 15,
        decoder_width: int = 32,
        embedder: str = "sface",
        embedder_kwargs: dict[str, Any] | None = None,
        reid_threshold: float | str | None = None,
        far: float = 1e-3,
        gallery_per_identity: int = 5,
        log_gallery: bool = False,
        n_gallery: int = 8,
        seed: int = 0,
        out_dir: str | None = None,
        split_layer: str | None = None,
        references: Any = None,
        image_size: int = 64,
        fail_on_error: bool = False,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, fail_on_error=fail_on_error)
        self.split_layer, self.references, self.image_size = split_layer, references, image_size
        if not (whitebox or decoder):
            raise ValueError("InversionAttack needs whitebox=True or decoder=True")
        self.n_targets, self.whitebox, self.whitebox_steps, self.whitebox_lr = n_targets, whitebox, whitebox_steps, whitebox_lr
        self.tv_weights, self.restarts = tuple(tv_weights), restarts
        self.decoder, self.decoder_epochs, self.decoder_width = decoder, decoder_epochs, decoder_width
        self.embedder_name, self.embedder_kwargs = embedder, dict(embedder_kwargs or {})
        self.reid_threshold, self.far, self.gallery_per_identity = reid_threshold, far, gallery_per_identity
        self.log_gallery, self.n_gallery, self.seed, self.out_dir = log_gallery, n_gallery, seed, out_dir
        self._embedder = None
        self._gallery: tuple[torch.Tensor, torch.Tensor] | None = None
        self.threshold_: float | None = threshold_from(reid_threshold, far)

    # -- set-up shared by every run ------------------------------------------------------------
    def _prepare(self, dm) -> None:
        if self._embedder is None:
            from privgan.faces.embedders import build_embedder

            self._embedder = build_embedder(self.embedder_name, **self.embedder_kwargs)
        if self._gallery is None:
            mem = dm.members()
            keep = torch.cat([(mem.labels == c).nonzero().squeeze(1)[: self.gallery_per_identity] for c in mem.labels.unique()])
            self._gallery = (embed_batched(self._embedder, mem.images[keep]), mem.labels[keep])
        if self.threshold_ is None:
            aux = dm.auxiliary()
            if len(aux) == 0:
                raise ValueError("calibrating the re-id threshold needs auxiliary identities (data.aux_identities > 0) or set reid_threshold")
            aux_labels = dm.auxiliary_labels() if hasattr(dm, "auxiliary_labels") else torch.arange(len(aux))
            self.threshold_ = impostor_threshold(embed_batched(self._embedder, aux), aux_labels, far=self.far)

    def _targets(self, dm) -> tuple[torch.Tensor, torch.Tensor]:
        non = dm.nonmembers()
        order = []
        per_id = [(non.labels == c).nonzero().squeeze(1).tolist() for c in non.labels.unique()]
        while len(order) < min(self.n_targets, len(non)):
            for lst in per_id:
                if lst and len(order) < self.n_targets:
                    order.append(lst.pop(0))
        idx = torch.tensor(order)
        return non.images[idx], non.labels[idx]

    # -- the attack ----------------------------------------------------------------------------
    def attack(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        from privgan.attacks.inversion import DecoderInversion, whitebox_invert

        client = resolve_client(pl_module, self.split_layer, "InversionAttack")
        self.references = as_references(self.references, image_size=self.image_size)
        dm = datamodule_of(trainer, ("nonmembers", "members", "auxiliary"), self.references)
        self._prepare(dm)
        pl_module.eval()
        device = pl_module.device
        x, y = self._targets(dm)
        x = x.to(device)
        transmit = getattr(pl_module, "transmit", lambda z: z)
        g = torch.Generator(device=device).manual_seed(self.seed + trainer.current_epoch)
        with torch.no_grad():
            z = client(x)
            observed = _noised(pl_module, z, g) if hasattr(pl_module, "transmit") else z
        recons = []
        if self.whitebox:
            for tv in self.tv_weights:
                r = whitebox_invert(
                    client, observed, image_shape=tuple(x.shape[1:]), steps=self.whitebox_steps,
                    lr=self.whitebox_lr, tv_weight=tv, restarts=self.restarts, originals=x,
                    generator=torch.Generator(device=device).manual_seed(self.seed),
                )
                recons.append((f"whitebox_tv{tv:g}", r))
        if self.decoder:
            aux = dm.auxiliary().to(device)
            dec = DecoderInversion(
                feature_shape=tuple(observed.shape[1:]), image_shape=tuple(x.shape[1:]),
                width=self.decoder_width, epochs=self.decoder_epochs, seed=self.seed,
            ).fit(client, aux, transmit=lambda f: transmit(f))
            recons.append(("decoder", dec.reconstruct(observed, originals=x)))
        metrics: dict[str, float] = {}
        emb_g, lab_g = self._gallery
        base = identify(embed_batched(self._embedder, x.cpu()), y, emb_g, lab_g, threshold=self.threshold_).metrics()
        metrics["privacy/inversion_reid_rate_originals"] = base["reid_rate"]
        metrics["privacy/inversion_reid_top1_chance"] = base["reid_top1_chance"]
        metrics["privacy/inversion_reid_threshold"] = float(self.threshold_)
        for name, r in recons:
            q = r.metrics()
            rid = identify(embed_batched(self._embedder, r.reconstructions.detach().cpu()), y, emb_g, lab_g, threshold=self.threshold_).metrics()
            for k, v in {**q, **rid}.items():
                if k != "reid_top1_chance":
                    metrics[f"privacy/inversion_{name}_{k}"] = v
        for k in ("psnr_db", "ssim", "reid_rate", "reid_top1"):
            vals = {name: metrics[f"privacy/inversion_{name}_{k}"] for name, _ in recons}
            best = max(vals, key=vals.get)
            metrics[f"privacy/inversion_{k}"] = vals[best]
            if k == "reid_rate":
                metrics["privacy/inversion_reid_rate_ci_low"] = metrics[f"privacy/inversion_{best}_reid_rate_ci_low"]
                metrics["privacy/inversion_reid_rate_ci_high"] = metrics[f"privacy/inversion_{best}_reid_rate_ci_high"]
        self._save(trainer, x, recons, metrics)
        return metrics

    def _save(self, trainer: L.Trainer, x: torch.Tensor, recons: list, metrics: dict[str, float]) -> None:
        out = run_dir(trainer, self.out_dir) / "inversion"
        tag = f"epoch_{trainer.current_epoch:03d}"
        n = self.n_gallery
        rows = [x[:n].cpu()] + [r.reconstructions[:n].detach().cpu() for _, r in recons]
        labels = ["original (held-out)"] + [
            f"{name}: PSNR {metrics[f'privacy/inversion_{name}_psnr_db']:.1f} dB, re-id {metrics[f'privacy/inversion_{name}_reid_rate']:.2f}"
            for name, _ in recons
        ]
        path = image_grid(rows, labels=labels, path=out / f"{tag}.png")
        write_json(out / f"{tag}.json", metrics)
        if self.log_gallery:
            log_image(trainer, "privacy/inversion_gallery", path, f"epoch {trainer.current_epoch}: " + "; ".join(labels[1:]))


def threshold_from(spec: float | str | None, far: float) -> float | None:
    """A fixed cosine threshold: a number, or ``threshold_at_far_<far>`` read from an eval-lfw JSON."""
    if spec is None or isinstance(spec, (int, float)):
        return None if spec is None else float(spec)
    try:
        return float(spec)
    except ValueError:
        pass
    path = Path(spec)
    key = f"threshold_at_far_{far:g}"
    try:
        value = json.loads(path.read_text())[key]
    except (OSError, ValueError) as e:
        raise ValueError(f"reid_threshold: cannot read {str(path)!r}: {e}") from e
    except KeyError:
        raise ValueError(f"reid_threshold: {str(path)!r} has no {key!r} (run `privgan faces eval-lfw` for this FAR)") from None
    return float(value)


def _noised(pl_module: L.LightningModule, z: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The transmitted features, with seeded noise when the module's defence supports it."""
    defence = getattr(getattr(pl_module, "net", None), "defence", None)
    if defence is not None and hasattr(defence, "add_noise"):
        return defence.add_noise(z, generator=g)
    return pl_module.transmit(z)
