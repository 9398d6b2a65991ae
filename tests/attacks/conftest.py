"""Fixtures shared by the attack tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def synthetic_view():
    """The attacker's view of a small synthetic identity data set: 4 people, 16 photos each, 64 auxiliary photos."""
    from privgan.data.synthetic import SyntheticIdentityDataModule
    from privgan.targets.view import view_from

    dm = SyntheticIdentityDataModule(n_identities=4, per_identity=16, aux_images=64, image_size=16)
    dm.setup("fit")
    return view_from(dm)
