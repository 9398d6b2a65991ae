"""LightningModules privgan trains."""

from privgan.modules.split_classifier import SplitClassifier

__all__ = ["SplitClassifier"]
