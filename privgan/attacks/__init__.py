"""Attacks: one registered ``run(target, view, config) -> Result`` each; plain tensor code, no Lightning.

>>> from privgan.attacks import available_attacks
>>> available_attacks()
['gan_membership', 'identity_match', 'inversion', 'membership', 'model_inversion']
"""

from privgan.attacks import gan_membership, identity_match, inversion, membership, model_inversion  # noqa: F401 - registers them
from privgan.attacks.registry import AttackSpec, available_attacks, get_attack, make_config, register_attack, run_attack
from privgan.attacks.result import Gallery, Result, Signal

__all__ = ["AttackSpec", "Gallery", "Result", "Signal", "available_attacks", "get_attack", "make_config", "register_attack",
           "run_attack"]
