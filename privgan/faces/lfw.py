"""LFW verification (View 2, 10-fold pairs protocol): accuracy, ROC AUC and TAR at FAR=1e-3 of an embedder."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from privgan.faces.align import FaceAligner, warp_to_template
from privgan.faces.cache import NO_FACE, align_files, read_rgb
from privgan.metrics.roc import auc_score
from privgan.metrics.thresholds import tar_at_far
from privgan.paths import MissingDataError, lfw_root, require_dir
from privgan.faces.embedders import IdentityEmbedder

#: Mean MTCNN landmarks over 300 random LFW deep-funneled 250x250 images (left eye, right eye, nose,
#: mouth left, mouth right). Images where MTCNN finds no face are warped with these fixed points:
#: a fixed centred crop (about 133 px wide) in the same framing as the aligned crops.
LFW_MEAN_LANDMARKS_250 = np.array(
    [[104.8, 113.3], [146.7, 112.3], [126.1, 137.4], [108.4, 159.3], [145.4, 158.4]], dtype=np.float64
)
FAR_TARGET = 1e-3


@dataclass(frozen=True)
class Pair:
    """One verification pair of the pairs file; ``same`` is True for a matched (same person) pair."""

    name1: str
    n1: int
    name2: str
    n2: int
    same: bool
    fold: int
    line: int  # 1-based line number in the pairs file

    def files(self, image_dir: Path) -> tuple[Path, Path]:
        """Paths of the two images: ``<name>/<name>_%04d.jpg`` under ``image_dir``."""
        return (
            Path(image_dir) / self.name1 / f"{self.name1}_{self.n1:04d}.jpg",
            Path(image_dir) / self.name2 / f"{self.name2}_{self.n2:04d}.jpg",
        )


def _int(tok: str, path: Path, lineno: int, line: str) -> int:
    try:
        v = int(tok)
    except ValueError:
        v = -1
    if v < 1:
        raise ValueError(f"{path}:{lineno}: {tok!r} is not a positive image number in line {line!r}")
    return v


def read_pairs(path: str | Path) -> list[Pair]:
    """Parse an LFW pairs file ("<folds> <n>" header, then per fold n matched and n mismatched lines)."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"LFW pairs file not found: {str(path)!r}")
    lines = path.read_text().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"{path}:1: empty pairs file")
    head = lines[0].split()
    try:
        nums = [int(t) for t in head]
    except ValueError:
        nums = []
    if len(nums) not in (1, 2) or min(nums) < 1:
        raise ValueError(
            f"{path}:1: expected a header '<folds> <pairs per class>' (or '<pairs>'), got {lines[0]!r}"
        )
    n_folds, n_per = (1, nums[0]) if len(nums) == 1 else nums
    expected = n_folds * 2 * n_per
    if len(lines) - 1 != expected:
        raise ValueError(
            f"{path}: header {lines[0]!r} announces {expected} pair lines, found {len(lines) - 1}"
        )
    pairs: list[Pair] = []
    for i, line in enumerate(lines[1:]):
        lineno = i + 2
        fold, pos = divmod(i, 2 * n_per)
        same = pos < n_per
        tok = line.split()
        if same and len(tok) != 3:
            raise ValueError(f"{path}:{lineno}: expected a matched pair 'name n1 n2', got {line!r}")
        if not same and len(tok) != 4:
            raise ValueError(f"{path}:{lineno}: expected a mismatched pair 'name1 n1 name2 n2', got {line!r}")
        name1, n1, name2, n2 = (tok[0], tok[1], tok[0], tok[2]) if same else tok
        n1_, n2_ = _int(n1, path, lineno, line), _int(n2, path, lineno, line)
        pairs.append(Pair(name1, n1_, name2, n2_, same=same, fold=fold, line=lineno))
    return pairs


def subsample_pairs(pairs: list[Pair], max_pairs: int) -> list[Pair]:
    """Balanced subset: the first max_pairs // (2 * folds) matched and mismatched pairs of every fold."""
    folds = sorted({p.fold for p in pairs})
    k = max_pairs // (2 * len(folds))
    if k < 1:
        raise ValueError(f"max_pairs={max_pairs} is too small: need at least 2 per fold ({2 * len(folds)})")
    out: list[Pair] = []
    for f in folds:
        for same in (True, False):
            out += [p for p in pairs if p.fold == f and p.same == same][:k]
    return out


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Threshold (accept when score >= t) with the highest accuracy; the median of tied best ones."""
    u = np.unique(scores)
    cands = np.r_[u[0] - 1e-6, (u[:-1] + u[1:]) / 2, u[-1] + 1e-6]
    pos, neg = np.sort(scores[labels == 1]), np.sort(scores[labels == 0])
    tp = len(pos) - np.searchsorted(pos, cands, side="left")
    tn = np.searchsorted(neg, cands, side="left")
    acc = tp + tn
    best = np.nonzero(acc == acc.max())[0]
    return float(cands[best[len(best) // 2]])


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-fold accuracy with the threshold chosen on the other folds; (accuracies, thresholds)."""
    accs, thrs = [], []
    for f in np.unique(folds):
        test = folds == f
        t = best_threshold(scores[~test], labels[~test]) if (~test).any() else 0.0
        accs.append(float(((scores[test] >= t) == (labels[test] == 1)).mean()))
        thrs.append(t)
    return accs, thrs


def _fallback_crop(path: Path, size: int) -> np.ndarray | None:
    """Fixed crop at the mean LFW face position, warped into the template framing (used when MTCNN finds no face)."""
    img = read_rgb(path)
    if img is None:
        return None
    arr = np.asarray(img)
    h, w = arr.shape[:2]
    pts = LFW_MEAN_LANDMARKS_250 * np.array([w / 250.0, h / 250.0])
    return warp_to_template(arr, pts, size=size)


@dataclass(frozen=True)
class LfwResult:
    """Headline LFW verification numbers of one embedder, with the per-pair scores they rest on."""

    embedder: str
    accuracy: float  # mean over folds, threshold picked on the other folds
    accuracy_std: float
    fold_accuracies: tuple[float, ...]
    fold_thresholds: tuple[float, ...]
    auc: float
    tar_at_far_1e3: float  # on all pairs
    threshold_at_far_1e3: float
    n_pairs: int  # pairs scored
    n_fallback_pairs: int  # pairs with >= 1 image MTCNN found no face in (fixed centred crop instead)
    n_fallback_images: int
    n_dropped_pairs: int  # pairs with a missing or unreadable image (not scored)
    n_images: int
    n_images_cached: int
    align_seconds: float
    embed_seconds: float
    pairs_file: str
    scores: np.ndarray = field(repr=False, compare=False)
    labels: np.ndarray = field(repr=False, compare=False)
    folds: np.ndarray = field(repr=False, compare=False)

    def to_dict(self, *, include_scores: bool = True) -> dict[str, Any]:
        """JSON-ready dict: headline numbers, counts, timings and (optionally) per-pair scores and labels."""
        thr = self.threshold_at_far_1e3
        d: dict[str, Any] = {
            "embedder": self.embedder,
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "fold_accuracies": list(self.fold_accuracies),
            "fold_thresholds": list(self.fold_thresholds),
            "auc": self.auc,
            "tar_at_far_0.001": self.tar_at_far_1e3,
            "threshold_at_far_0.001": thr if np.isfinite(thr) else None,
            "n_pairs": self.n_pairs,
            "n_matched_pairs": int(self.labels.sum()),
            "n_mismatched_pairs": int(len(self.labels) - self.labels.sum()),
            "n_fallback_pairs": self.n_fallback_pairs,
            "n_fallback_images": self.n_fallback_images,
            "n_dropped_pairs": self.n_dropped_pairs,
            "n_images": self.n_images,
            "n_images_cached": self.n_images_cached,
            "align_seconds": self.align_seconds,
            "embed_seconds": self.embed_seconds,
            "pairs_file": self.pairs_file,
            "protocol": "LFW View 2 pairs, cosine similarity, 10-fold accuracy (threshold from the other folds); "
            "AUC and TAR@FAR=0.001 on all pairs; MTCNN 5-point ArcFace alignment, fixed centred crop when no face",
        }
        if include_scores:
            d["scores"] = [float(s) for s in self.scores]
            d["labels"] = [int(v) for v in self.labels]
            d["folds"] = [int(v) for v in self.folds]
        return d

    def save(self, out_dir: str | Path, *, include_scores: bool = True) -> Path:
        """Write ``lfw_<embedder>.json`` into ``out_dir``; returns its path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"lfw_{self.embedder}.json"
        path.write_text(json.dumps(self.to_dict(include_scores=include_scores), indent=1) + "\n")
        return path

    def summary(self) -> str:
        """One paragraph with the headline numbers and counts."""
        thr = f"{self.threshold_at_far_1e3:.3f}" if np.isfinite(self.threshold_at_far_1e3) else "n/a"
        return (
            f"LFW verification with embedder '{self.embedder}' on {self.n_pairs} pairs "
            f"({len(self.fold_accuracies)} folds): "
            f"accuracy {100 * self.accuracy:.2f}% ± {100 * self.accuracy_std:.2f}, "
            f"ROC AUC {self.auc:.4f}, TAR@FAR=0.001 {100 * self.tar_at_far_1e3:.2f}% (cosine threshold {thr}). "
            f"{self.n_fallback_pairs} pairs used a fixed centred crop for {self.n_fallback_images} images without an "
            f"MTCNN face; {self.n_dropped_pairs} pairs dropped for missing/unreadable images. "
            f"{self.n_images} images aligned in {self.align_seconds:.1f} s ({self.n_images_cached} from cache), "
            f"embedded in {self.embed_seconds:.1f} s."
        )


def evaluate_lfw(
    embedder: IdentityEmbedder,
    *,
    lfw_dir: Path | None = None,
    pairs_file: Path | None = None,
    aligner: FaceAligner | None = None,
    max_pairs: int | None = None,
    out_dir: Path | None = None,
    cache_dir: Path | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> LfwResult:
    """Score an embedder on the LFW pairs: align (cached), embed, cosine per pair, 10-fold accuracy, AUC, TAR@FAR."""
    root = require_dir(lfw_dir if lfw_dir is not None else lfw_root(), "LFW")
    image_dir = require_dir(root / "images_deepfunneled", "LFW deep-funneled images")
    pairs_path = Path(pairs_file) if pairs_file is not None else root / "pairs.txt"
    pairs = read_pairs(pairs_path)
    if max_pairs is not None and max_pairs < len(pairs):
        pairs = subsample_pairs(pairs, max_pairs)
    size = aligner.size if aligner is not None else 112

    files = list(dict.fromkeys(f for p in pairs for f in p.files(image_dir)))
    t0 = time.perf_counter()
    aligned = align_files(files, aligner=aligner, size=size, cache_dir=cache_dir, progress=progress)
    crops = dict(zip(aligned.paths, aligned.images))
    fallback: set[Path] = set()
    for s in aligned.skipped.get(NO_FACE, []):
        crop = _fallback_crop(Path(s), size)
        if crop is not None:
            crops[Path(s)] = torch.from_numpy(crop).permute(2, 0, 1)
            fallback.add(Path(s))
    align_s = time.perf_counter() - t0

    used = [p for p in pairs if all(f in crops for f in p.files(image_dir))]
    if not used:
        raise RuntimeError(f"no LFW pair could be scored: {aligned.summary()}")
    names = list(crops)
    index = {f: i for i, f in enumerate(names)}
    t0 = time.perf_counter()
    stack = torch.stack([crops[f] for f in names])
    emb = torch.cat(
        [embedder.embed(stack[i : i + batch_size].float() / 255.0) for i in range(0, len(stack), batch_size)]
    ).numpy().astype(np.float64)
    embed_s = time.perf_counter() - t0

    i1 = np.array([index[p.files(image_dir)[0]] for p in used])
    i2 = np.array([index[p.files(image_dir)[1]] for p in used])
    scores = (emb[i1] * emb[i2]).sum(1)
    labels = np.array([int(p.same) for p in used])
    folds = np.array([p.fold for p in used])
    accs, thrs = kfold_accuracy(scores, labels, folds)
    tar, thr = tar_at_far(scores, labels)
    result = LfwResult(
        embedder=str(getattr(embedder, "name", type(embedder).__name__)),
        accuracy=float(np.mean(accs)),
        accuracy_std=float(np.std(accs)),
        fold_accuracies=tuple(accs),
        fold_thresholds=tuple(thrs),
        auc=auc_score(scores, labels),
        tar_at_far_1e3=tar,
        threshold_at_far_1e3=thr,
        n_pairs=len(used),
        n_fallback_pairs=sum(any(f in fallback for f in p.files(image_dir)) for p in used),
        n_fallback_images=len(fallback),
        n_dropped_pairs=len(pairs) - len(used),
        n_images=len(files),
        n_images_cached=aligned.n_cached,
        align_seconds=align_s,
        embed_seconds=embed_s,
        pairs_file=str(pairs_path),
        scores=scores,
        labels=labels,
        folds=folds,
    )
    if out_dir is not None:
        result.save(out_dir)
    return result


def eval_lfw_main(embedder: str, out: Path, max_pairs: int | None, embedder_path: str | None) -> LfwResult:
    """Entry point of ``privgan faces eval-lfw``: build the embedder, evaluate, write JSON, print a summary.

    ``embedder_path``: the model file (``--embedder-path``): required for ``onnx``, a state-dict
    file for ``facenet`` (else facenet's own cached download), another SFace file for ``sface``.
    """
    from privgan.faces.embedders import build_embedder

    if embedder == "onnx" and embedder_path is None:
        raise ValueError("--embedder onnx needs --embedder-path pointing to an .onnx face embedding model "
                         "(e.g. MobileFaceNet.onnx)")
    kwargs: dict[str, Any] = {}
    if embedder_path is not None:
        kwargs["weights_path" if embedder == "facenet" else "model_path"] = embedder_path
    elif embedder == "facenet":
        kwargs["pretrained"] = "vggface2"  # facenet-pytorch's own (cached) download
    emb = build_embedder(embedder, **kwargs)
    result = evaluate_lfw(emb, max_pairs=max_pairs, progress=True)
    path = result.save(out)
    print(result.summary())
    print(f"Wrote {path}")
    return result
