"""Lightning callbacks that attack a model while it trains and draw the privacy–utility curve."""

from privgan.callbacks.audit import PrivacyAudit
from privgan.callbacks.base import AttackCallback
from privgan.callbacks.curve import PrivacyUtilityCurve
from privgan.callbacks.dp import DPSGDCallback
from privgan.callbacks.gan_membership import GanMembershipAttack
from privgan.callbacks.identity_match import IdentityMatchAttack
from privgan.callbacks.init_from import InitFrom
from privgan.callbacks.inversion import InversionAttack
from privgan.callbacks.manifest import MemberManifestArtifact
from privgan.callbacks.membership import MembershipAttack
from privgan.callbacks.model_inversion import ModelInversionAttack
from privgan.callbacks.rng import RandomState

__all__ = [
    "AttackCallback",
    "DPSGDCallback",
    "GanMembershipAttack",
    "IdentityMatchAttack",
    "InitFrom",
    "InversionAttack",
    "MemberManifestArtifact",
    "MembershipAttack",
    "ModelInversionAttack",
    "PrivacyAudit",
    "PrivacyUtilityCurve",
    "RandomState",
]
