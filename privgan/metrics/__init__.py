"""Metrics: ROC AUC, TPR at low FPR with bootstrap CIs, PSNR, SSIM, Fréchet distance."""

from privgan.metrics.roc import auc_score, membership_metrics, roc_curve, tpr_at_fpr

__all__ = ["auc_score", "membership_metrics", "roc_curve", "tpr_at_fpr"]
