"""LightningModules privgan trains."""

from privgan.modules.gan import GAN
from privgan.modules.split_classifier import SplitClassifier

__all__ = ["GAN", "SplitClassifier"]
