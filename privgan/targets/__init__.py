"""What is attacked (GAN sampler, split client, classifier logits) and what the attacker sees (the view)."""

from privgan.targets.adapters import classifier_target, gan_target, split_target
from privgan.targets.kinds import ClassifierTarget, GanTarget, SplitTarget
from privgan.targets.view import AttackerView, Photos, view_from

__all__ = ["AttackerView", "ClassifierTarget", "GanTarget", "Photos", "SplitTarget", "classifier_target", "gan_target",
           "split_target", "view_from"]
