"""Metrics: torchmetrics and scipy where they compute it, privgan's own only where neither does.

- ``roc``: ROC curve and AUC (torchmetrics), TPR at a fixed FPR (strict, privgan), stratified
  percentile bootstrap CIs (scipy), ``membership_metrics`` (all of them with the counts).
- ``intervals``: Wilson binomial CIs (scipy).
- ``thresholds``: cosine threshold at a pair false-accept rate from impostor pairs, TAR at a FAR.
- ``image_quality``: per-image PSNR and SSIM (torchmetrics).
- ``frechet``: Fréchet distance (scipy's matrix square root) on face embeddings or Inception features.
"""

from privgan.metrics.frechet import fd_face, frechet_distance
from privgan.metrics.image_quality import psnr_db, ssim
from privgan.metrics.intervals import binomial_ci, wilson_interval
from privgan.metrics.roc import auc_score, bootstrap_ci, membership_metrics, roc_curve, tpr_at_fpr
from privgan.metrics.thresholds import impostor_scores, tar_at_far, threshold_at_far

__all__ = [
    "auc_score", "binomial_ci", "bootstrap_ci", "fd_face", "frechet_distance", "impostor_scores", "membership_metrics",
    "psnr_db", "roc_curve", "ssim", "tar_at_far", "threshold_at_far", "tpr_at_fpr", "wilson_interval",
]
