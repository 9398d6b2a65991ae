"""Defences: DP-SGD through Opacus, noise and clipping on split activations."""

from privgan.defences.activation_noise import ActivationNoise
from privgan.defences.dp import DPSGD, DPConfigError

__all__ = ["DPSGD", "ActivationNoise", "DPConfigError"]
