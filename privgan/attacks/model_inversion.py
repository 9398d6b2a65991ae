"""Model inversion of a face classifier: what does each class's person look like to the model? (PPA-style.)

For each member identity's class the attacker searches a face prior's codes (privgan.attacks.priors:
a public face GAN, or the auxiliary photos' eigenfaces) to maximise the classifier's confidence in that
class (Struppek et al. 2022, "Plug & Play Attacks"; Zhang et al. 2020), from ``restarts`` random
starts, with mirrored copies as the only augmentation. The restart the classifier is most confident in
is the class's answer. A face recogniser that never saw the classifier then ranks the member people by
how closely their *held-out* photos match it: top-1 / top-5 over classes (chance 1 / classes and
5 / classes, Wilson intervals) and, with every restart as a trial, ``mi_top1_restarts``. Plain tensor
code: no Lightning needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from privgan.attacks.reconstruction import _attack_mode, cosine_lr
from privgan.attacks.registry import register_attack
from privgan.attacks.result import Gallery, Result
from privgan.attacks.scoring import rate_signal


@dataclass(frozen=True)
class ModelInversionConfig:
    """Settings of the model-inversion attack on a classifier.

    ``prior``: ``eigenfaces`` (``prior_components`` principal directions of the auxiliary photos)
    or the path of a face GAN that knows no one of the study (privgan GAN ``.ckpt``, ``.pt2`` or
    TorchScript). ``max_classes``: invert at most this many member classes (the first ones).
    """

    prior: str = "eigenfaces"
    prior_components: int = 300
    restarts: int = 8
    steps: int = 300
    lr: float = 0.05
    latent_weight: float = 1e-3
    mirror: bool = True
    max_classes: int | None = 64
    embedder: str = "sface"
    embedder_kwargs: dict | None = None
    n_gallery: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.restarts < 1 or self.steps < 1:
            raise ValueError(f"need restarts >= 1 and steps >= 1, got restarts={self.restarts}, steps={self.steps}")
        if self.max_classes is not None and self.max_classes < 2:
            raise ValueError(f"max_classes must be at least 2 (or null for all), got {self.max_classes}")


def invert_classes(logits_fn: Any, prior: Any, classes: Tensor, *, image_shape: tuple[int, ...], restarts: int = 8,
                   steps: int = 300, lr: float = 0.05, latent_weight: float = 1e-3, mirror: bool = True,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Codes that maximise each class's log-probability: (best image per class, every image C x R, confidences C x R)."""
    from privgan.attacks.prior_inversion import _to_shape

    c, r = len(classes), restarts
    target = classes.repeat_interleave(r)
    z = torch.randn(c * r, prior.latent_dim, generator=generator).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    with _attack_mode(logits_fn):
        for t in range(steps):
            cosine_lr(opt, lr, t, steps)
            x = _to_shape(prior(z), image_shape)
            views, labels = (torch.cat([x, x.flip(-1)]), torch.cat([target, target])) if mirror else (x, target)
            loss = F.cross_entropy(logits_fn(views), labels, reduction="sum") + latent_weight * z.pow(2).sum()
            (g,) = torch.autograd.grad(loss, [z])
            z.grad = g
            opt.step()
        with torch.no_grad():
            x = _to_shape(prior(z), image_shape)
            conf = F.softmax(logits_fn(x).float(), dim=1)[torch.arange(c * r), target].view(c, r)
    images = x.detach().view(c, r, *image_shape)
    return images[torch.arange(c), conf.argmax(1)], images, conf


def _ranks(emb: Tensor, gallery: Tensor, gallery_labels: Tensor, classes: Tensor) -> Tensor:
    """Per image, the identities (from ``classes``) sorted by their best held-out photo's cosine, most similar first."""
    sims = emb.float() @ gallery.float().T
    per_id = torch.stack([sims[:, gallery_labels == c].max(1).values for c in classes.tolist()], dim=1)
    return classes[per_id.argsort(dim=1, descending=True)]


@register_attack("model_inversion", config=ModelInversionConfig, target="classifier", needs=("members", "heldout", "auxiliary"))
def run_model_inversion(target: Any, view: Any, config: ModelInversionConfig) -> Result:
    """Rebuild each member class's face from the classifier alone; re-identified against the person's held-out photos."""
    from privgan.attacks.priors import linear_prior, load_face_prior
    from privgan.faces.embedders import embed_batched, get_embedder

    start = time.perf_counter()
    held = view.heldout
    classes = held.labels.unique(sorted=True)
    if config.max_classes is not None:
        classes = classes[: config.max_classes]
    if len(classes) < 2:
        raise ValueError("model inversion needs held-out photos of at least two member identities")
    image_shape = tuple(held.images.shape[1:])
    prior = (linear_prior(view.auxiliary.images, config.prior_components) if config.prior == "eigenfaces"
             else load_face_prior(config.prior))
    best, every, conf = invert_classes(target.logits, prior, classes, image_shape=image_shape, restarts=config.restarts,
                                       steps=config.steps, lr=config.lr, latent_weight=config.latent_weight,
                                       mirror=config.mirror, generator=torch.Generator().manual_seed(config.seed))
    embedder = get_embedder(config.embedder, **(config.embedder_kwargs or {}))
    keep = torch.isin(held.labels, classes)
    gallery, gallery_labels = view.embeddings("heldout", embedder)[keep], held.labels[keep]
    ranks = _ranks(embed_batched(embedder, best.cpu()), gallery, gallery_labels, classes)
    every_ranks = _ranks(embed_batched(embedder, every.flatten(0, 1).cpu()), gallery, gallery_labels, classes)
    n = len(classes)
    k = min(5, n)
    signals = {
        "mi_top1": rate_signal(ranks[:, 0] == classes, 1.0 / n),
        "mi_top5": rate_signal((ranks[:, :k] == classes[:, None]).any(1), k / n),
        "mi_top1_restarts": rate_signal(every_ranks[:, 0] == classes.repeat_interleave(config.restarts), 1.0 / n),
    }
    values = {"mi_chance": 1.0 / n, "n_classes": float(n), "restarts": float(config.restarts),
              "confidence_mean": float(conf.max(1).values.mean()), "seconds_per_class": (time.perf_counter() - start) / n}
    notes = []
    if values["confidence_mean"] < 0.5:
        notes.append(f"the classifier's mean confidence in the inverted images is {values['confidence_mean']:.2f}: "
                     "the search did not reach its classes (raise steps / restarts) - a weak attack, not a safe model")
    g = min(config.n_gallery, n)
    first_photo = torch.stack([held.images[held.labels == c][0] for c in classes[:g].tolist()]) if g else None
    images = {"gallery": Gallery((first_photo.cpu(), best[:g].cpu()),
                                 ("held-out photo of the class's person", "model inversion"))} if g else {}
    return Result(attack="model_inversion", signals=signals, headline="mi_top1", values=values, images=images,
                  notes=tuple(notes), converged=values["confidence_mean"] >= 0.5,
                  knowledge=f"white-box classifier; face prior: {prior.source}; held-out photos for re-identification only")
