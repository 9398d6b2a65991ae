"""The data-free batch-norm prior: what it measures, that the search uses it, and where it does not apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from privgan.attacks.bn_prior import BatchNormPrior, batch_norm_layers
from privgan.attacks.inversion import whitebox_invert
from tests.attacks.test_inversion import smooth_images


def _bn_client(train: torch.Tensor) -> nn.Module:
    """Two strided conv + batch-norm stages whose running statistics are those of ``train`` (cumulative average)."""
    torch.manual_seed(0)
    client = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8, momentum=None), nn.ReLU(),
                           nn.Conv2d(8, 8, 3, 2, 1), nn.BatchNorm2d(8, momentum=None), nn.ReLU()).train()
    with torch.no_grad():
        for b in train.split(64):
            client(b)
    return client.eval()


def _distance(client: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad(), BatchNormPrior(batch_norm_layers([client])) as prior:
        client(x)
        return float(prior.take())


def test_images_like_the_training_data_sit_closer_to_the_stored_statistics_than_noise():
    client = _bn_client(smooth_images(256, size=16, seed=0, low=4))
    like = _distance(client, smooth_images(32, size=16, seed=1, low=4))
    noise = _distance(client, torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(2)))
    assert like < 0.5 * noise, (like, noise)
    assert not client[1]._forward_hooks  # hooks removed on exit


def test_the_data_free_search_pulls_reconstructions_towards_the_stored_statistics_and_leaves_the_client_alone():
    client = _bn_client(smooth_images(256, size=16, seed=0, low=4))
    targets = smooth_images(16, size=16, seed=3, low=4)
    with torch.no_grad():
        observed = client(targets)
    before = {k: v.clone() for k, v in client.state_dict().items()}
    plain = whitebox_invert(client, observed, image_shape=(3, 16, 16), steps=120, tv_weight=0.05, originals=targets)
    free = whitebox_invert(client, observed, image_shape=(3, 16, 16), steps=120, tv_weight=0.05, originals=targets, bn_weight=1.0)
    assert free.attack == "datafree" and plain.attack == "whitebox_tv0.05"
    assert _distance(client, free.reconstructions) < _distance(client, plain.reconstructions)
    assert all(torch.equal(v, before[k]) for k, v in client.state_dict().items()) and not client.training
    assert all(not m._forward_hooks for m in client.modules())


def test_group_norm_clients_have_no_statistics_to_use():
    client = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8))
    assert batch_norm_layers([client]) == []
    with pytest.raises(ValueError, match="no batch-norm statistics"):
        BatchNormPrior([])


def test_registered_inversion_runs_data_free_only_where_the_client_has_batch_norm(synthetic_view):
    from privgan.attacks import run_attack
    from privgan.targets.kinds import SplitTarget

    config = {"n_targets": 8, "whitebox_steps": 40, "tv_weights": (0.05,), "decoder": False, "n_gallery": 0, "pair_far": 0.05}
    bn = _bn_client(synthetic_view.auxiliary.images)
    with_bn = run_attack("inversion", SplitTarget(client=bn), synthetic_view, config)
    assert "datafree_reid_top1" in with_bn.signals and "batch-norm statistics, no data" in with_bn.knowledge
    gn = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.GroupNorm(2, 8))
    without = run_attack("inversion", SplitTarget(client=gn), synthetic_view, config)
    assert "datafree_reid_top1" not in without.signals
    assert any("data-free inversion not applicable" in n for n in without.notes)
