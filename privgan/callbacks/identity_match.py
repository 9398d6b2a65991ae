"""IdentityMatchAttack: does the generator reproduce the people it trained on? (Webster et al. 2021)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from privgan.attacks.identity_match import IDENTITY_SCORES, IdentityMatchScores, identity_match_all, share_matching, top_matches
from privgan.attacks.reidentification import embed_batched, impostor_threshold
from privgan.callbacks.base import AttackCallback, as_references, datamodule_of, run_dir
from privgan.logging.local_files import image_grid, write_csv, write_json
from privgan.logging.wandb_helpers import log_image
from privgan.metrics.frechet import frechet_distance
from privgan.callbacks.adapters import SampleFn, resolve_sampler


@torch.no_grad()
def draw_samples(
    pl_module: L.LightningModule,
    n: int,
    *,
    sample_fn: SampleFn | None = None,
    generator_attr: str | None = None,
    latent_dim: int | None = None,
    output_range: str = "tanh",
    seed: int = 0,
    batch_size: int = 256,
    who: str = "this attack",
) -> torch.Tensor:
    """``n`` generated images on CPU from ``sample_fn``, ``module.<generator_attr>`` or ``module.sample``, seeded.

    The same seed every time, so the same latent points are followed through training.
    """
    fn = resolve_sampler(pl_module, sample_fn, generator_attr, latent_dim, output_range, who)
    device = getattr(pl_module, "device", torch.device("cpu"))
    g = torch.Generator(device=device).manual_seed(seed)
    out = []
    for i in range(0, n, batch_size):
        x = fn(min(batch_size, n - i), g).detach().float().cpu()
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"samples must be N x 3 x H x W, got {tuple(x.shape)}")
        if len(x) and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
            raise ValueError(f"samples must lie in [0, 1] (got [{x.min():.2f}, {x.max():.2f}]); map tanh outputs with (x + 1) / 2")
        out.append(x.clamp(0, 1))
    return torch.cat(out)


class IdentityMatchAttack(AttackCallback):
    """Every N epochs: sample faces, match them to reference photos of member and non-member identities.

    Scores each identity by ``max`` similarity, ``topk_mean`` (mean of the ``k`` most similar
    samples) and ``count_above`` (samples above a threshold calibrated so that ``alpha``
    samples per non-member identity exceed it); ``score`` is the headline reported as
    ``privacy/identity_auc``, ``privacy/identity_tpr_at_fpr_0.01`` etc. (with CIs and counts).
    Per-identity scores and p-values go to ``identity/epoch_NNN_scores.csv``; a gallery of the
    best matches next to the matched identity's closest reference photos to
    ``identity/epoch_NNN_gallery.png`` (sent to the logger only with ``log_gallery``: real
    faces). ``utility/fd_face`` is the Fréchet distance between sample and held-out real face
    embeddings (``fd=False`` to skip). Modules privgan did not write pass ``generator_attr`` (and
    ``latent_dim`` / ``output_range``) or ``sample_fn``, and ``references`` (a folder, see
    :class:`privgan.data.ReferenceFolder`) when their datamodule has no reference photos.
    ``privacy/identity_samples_matching_members`` is the share of samples whose closest member
    reference passes a verification threshold at ``verify_far`` (calibrated on impostor pairs of
    the reference photos unless ``verify_threshold`` is given), next to the same share for
    non-member references: when the AUC finds nothing, these say whether any sample looks like
    anyone at all.
    """

    name = "identity"

    def __init__(
        self,
        *,
        every_n_epochs: int = 1,
        n_samples: int = 1000,
        score: str = "topk_mean",
        k: int = 5,
        alpha: float = 1.0,
        threshold: float | None = None,
        reduce: str = "mean",
        embedder: str = "sface",
        embedder_kwargs: dict[str, Any] | None = None,
        sample_fn: SampleFn | None = None,
        generator_attr: str | None = None,
        latent_dim: int | None = None,
        output_range: str = "tanh",
        references: Any = None,
        sample_batch_size: int = 256,
        fd: bool = True,
        n_gallery: int = 8,
        log_gallery: bool = False,
        n_boot: int = 500,
        seed: int = 0,
        out_dir: str | None = None,
        verify_far: float = 1e-3,
        verify_threshold: float | None = None,
        fail_on_error: bool = False,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, fail_on_error=fail_on_error)
        if not 0 < verify_far < 1:
            raise ValueError(f"verify_far must be in (0, 1), got {verify_far}")
        self.verify_far, self.verify_threshold = verify_far, verify_threshold
        self.generator_attr, self.latent_dim, self.output_range = generator_attr, latent_dim, output_range
        self.references = as_references(references, image_size=112)
        if score not in IDENTITY_SCORES:
            raise ValueError(f"score must be one of {', '.join(IDENTITY_SCORES)}, got {score!r}")
        if n_samples < 2:
            raise ValueError(f"n_samples must be >= 2, got {n_samples}")
        self.n_samples, self.score, self.k, self.alpha, self.threshold, self.reduce = n_samples, score, k, alpha, threshold, reduce
        self.embedder_name, self.embedder_kwargs = embedder, dict(embedder_kwargs or {})
        self.sample_fn, self.sample_batch_size, self.fd = sample_fn, sample_batch_size, fd
        self.n_gallery, self.log_gallery, self.n_boot, self.seed, self.out_dir = n_gallery, log_gallery, n_boot, seed, out_dir
        self._embedder = None
        self._refs: dict[str, Any] | None = None
        self._heldout_emb: torch.Tensor | None = None

    def _prepare(self, dm: Any) -> None:
        """Build the embedder and embed the reference photos once."""
        if self._embedder is None:
            from privgan.faces.embedders import build_embedder

            self._embedder = build_embedder(self.embedder_name, **self.embedder_kwargs)
        if self._refs is None:
            mx, my = dm.member_references()
            nx, ny = dm.nonmember_references()
            m_names = list(getattr(dm, "member_identities", [])) or None
            n_names = list(getattr(dm, "nonmember_identities", [])) or None
            counts = dm.member_train_counts().tolist() if hasattr(dm, "member_train_counts") else None
            over = set(getattr(dm, "overrepresented_identities", []) or [])
            self._refs = {
                "member": (mx, my, embed_batched(self._embedder, mx)),
                "nonmember": (nx, ny, embed_batched(self._embedder, nx)),
                "member_names": m_names,
                "nonmember_names": n_names,
                "train_counts": counts,
                "overrepresented": over,
            }
            if self.verify_threshold is None:
                emb = torch.cat([self._refs["member"][2], self._refs["nonmember"][2]])
                labels = torch.cat([my, ny + int(my.max()) + 1])
                try:
                    self.verify_threshold = impostor_threshold(emb, labels, far=self.verify_far)
                except ValueError as e:  # too few reference photos for this FAR: report NaN shares
                    rank_zero_warn(f"IdentityMatchAttack: no verification threshold ({e}); pass verify_threshold")
                    self.verify_threshold = float("nan")

    def attack(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        dm = datamodule_of(trainer, ("member_references", "nonmember_references"), self.references)
        pl_module.eval()
        samples = draw_samples(pl_module, self.n_samples, sample_fn=self.sample_fn, generator_attr=self.generator_attr,
                               latent_dim=self.latent_dim, output_range=self.output_range, seed=self.seed,
                               batch_size=self.sample_batch_size, who="IdentityMatchAttack")
        self._prepare(dm)
        emb = embed_batched(self._embedder, samples)
        r = self._refs
        (_, my, m_emb), (_, ny, n_emb) = r["member"], r["nonmember"]
        results = identity_match_all(
            emb, m_emb, my, n_emb, ny, k=self.k, alpha=self.alpha, threshold=self.threshold, reduce=self.reduce,
            member_names=r["member_names"], nonmember_names=r["nonmember_names"],
        )
        metrics: dict[str, float] = {}
        for name, res in results.items():
            metrics.update(res.metrics(n_boot=self.n_boot, seed=self.seed, prefix=f"privacy/identity_{name}_"))
        head = f"privacy/identity_{self.score}_"
        for key in [k for k in metrics if k.startswith(head)]:
            metrics["privacy/identity_" + key[len(head):]] = metrics[key]
        metrics.update(self._subgroups(results[self.score]))
        metrics["privacy/identity_verify_threshold"] = float(self.verify_threshold)
        metrics["privacy/identity_samples_matching_members"] = share_matching(emb, m_emb, self.verify_threshold)
        metrics["privacy/identity_samples_matching_nonmembers"] = share_matching(emb, n_emb, self.verify_threshold)
        if self.fd and hasattr(dm, "heldout_images"):
            metrics.update(self._fd(trainer, dm, emb))
        self._save(trainer, results, samples, emb, metrics)
        return metrics

    def _subgroups(self, res: IdentityMatchScores) -> dict[str, float]:
        """Over-represented and regular members, each against all non-members (overrepresented design)."""
        over = self._refs["overrepresented"]
        if not over:
            return {}
        is_over = torch.tensor([n in over for n in res.names])
        out: dict[str, float] = {}
        for group, keep in (("over", is_over | (res.labels == 0)), ("regular", ~is_over)):
            sub = IdentityMatchScores(res.scores[keep], res.labels[keep], tuple(n for n, k in zip(res.names, keep) if k),
                                      res.score, res.n_samples, res.threshold)
            if sub.labels.min() == sub.labels.max():
                continue
            m = sub.metrics(n_boot=self.n_boot, seed=self.seed)
            for key in ("auc", "auc_ci_low", "auc_ci_high", "tpr_at_fpr_0.1", "n_members", "members_p_median"):
                out[f"privacy/identity_{group}_{key}"] = m[key]
        return out

    def _fd(self, trainer: L.Trainer, dm: Any, sample_emb: torch.Tensor) -> dict[str, float]:
        """Fréchet distance of sample vs held-out real face embeddings (what ``fd_face`` computes), made visible to the curve."""
        if self._heldout_emb is None:
            self._heldout_emb = embed_batched(self._embedder, dm.heldout_images())
        fd = frechet_distance(sample_emb, self._heldout_emb)
        trainer.callback_metrics["utility/fd_face"] = torch.tensor(fd)
        return {"utility/fd_face": fd, "utility/fd_face_n_samples": float(len(sample_emb)), "utility/fd_face_n_real": float(len(self._heldout_emb))}

    def _save(self, trainer: L.Trainer, results: dict[str, IdentityMatchScores], samples: torch.Tensor,
              emb: torch.Tensor, metrics: dict[str, float]) -> None:
        out = run_dir(trainer, self.out_dir) / "identity"
        tag = f"epoch_{trainer.current_epoch:03d}"
        first = next(iter(results.values()))
        counts, over = self._refs["train_counts"], self._refs["overrepresented"]
        n_members = int(first.labels.sum())
        pvals = {s: res.p_values() for s, res in results.items()}
        rows = []
        for i, (name, lab) in enumerate(zip(first.names, first.labels.tolist())):
            row: dict[str, Any] = {"identity": name, "member": lab,
                                   "group": "nonmember" if not lab else ("overrepresented" if name in over else "member"),
                                   "n_train": counts[i] if lab and counts is not None else 0}
            for s, res in results.items():
                row[s] = float(res.scores[i])
                row[f"p_value_{s}"] = float(pvals[s][i])
            rows.append(row)
        write_csv(out / f"{tag}_scores.csv", rows)
        write_json(out / f"{tag}.json", metrics)
        if self.n_gallery > 0:
            (mx, my, m_emb), (nx, ny, n_emb) = self._refs["member"], self._refs["nonmember"]
            ref_x = torch.cat([mx, nx])
            labels = torch.cat([my, ny + n_members])
            names = list(first.names)
            matches = top_matches(emb, torch.cat([m_emb, n_emb]), labels, names=names, n=self.n_gallery, reduce=self.reduce)
            grid, captions = [], []
            size = samples.shape[-2:]
            for t in matches:
                refs = ref_x[list(t.reference_indices)]
                if refs.shape[-2:] != size:  # reference photos may come at another resolution (a folder)
                    refs = torch.nn.functional.interpolate(refs.float(), size=tuple(size), mode="bilinear", antialias=True)
                grid.append(torch.cat([samples[t.sample_index : t.sample_index + 1], refs.clamp(0, 1)]))
                kind = "member" if t.identity < n_members else "non-member"
                captions.append(f"{t.name} ({kind}) sim {t.similarity:.2f}; closest refs "
                                + ", ".join(f"{s:.2f}" for s in t.reference_similarities))
            if grid:
                path = image_grid(grid, labels=captions, path=out / f"{tag}_gallery.png")
                if self.log_gallery:
                    log_image(trainer, "privacy/identity_gallery", path, f"epoch {trainer.current_epoch}: sample, then closest reference photos")
