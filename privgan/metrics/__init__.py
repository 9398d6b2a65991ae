"""Metrics: ROC AUC, TPR at low FPR with bootstrap CIs, PSNR, SSIM, Fréchet distance."""

from privgan.metrics.frechet import fd_face, frechet_distance
from privgan.metrics.image_quality import psnr_db, ssim
from privgan.metrics.roc import auc_score, membership_metrics, roc_curve, tpr_at_fpr

__all__ = ["auc_score", "fd_face", "frechet_distance", "membership_metrics", "psnr_db", "roc_curve", "ssim", "tpr_at_fpr"]
