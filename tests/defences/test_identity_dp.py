"""Privacy by person: one person moves one update by at most the clip norm, however many photos they have; ε is
Opacus's for the identity sample rate; data without identity labels is refused."""

import math

import pytest
import torch
from opacus import GradSampleModule
from opacus.accountants import create_accountant
from opacus.optimizers import DPOptimizer
from torch import nn
from torch.utils.data import TensorDataset

from privgan.defences.identity_dp import (IdentityDPOptimizer, IdentityLabelError, IdentityPoissonSampler, group_privacy,
                                          identity_epsilon, identity_index, make_identity_private)


def people(photos_of_big: int = 30, small: int = 5, photos_each: int = 3):
    """Person 0 with many photos pulling one way; a few people with 3 photos each."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(photos_of_big, 8, generator=g) + 3, torch.randn(small * photos_each, 8, generator=g)])
    y = torch.cat([torch.zeros(photos_of_big, dtype=torch.long), torch.randint(0, 3, (small * photos_each,), generator=g)])
    ids = torch.cat([torch.zeros(photos_of_big, dtype=torch.long), 1 + torch.arange(small).repeat_interleave(photos_each)])
    return x, y, ids


def one_update(x, y, ids, *, by_person: bool, clip: float = 1.0) -> torch.Tensor:
    """Parameter change of one noiseless DP-SGD step (sum reduction, lr 1) from a fixed start."""
    torch.manual_seed(0)
    model = GradSampleModule(nn.Linear(8, 3), loss_reduction="sum")
    start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    cls = IdentityDPOptimizer if by_person else DPOptimizer
    opt = cls(torch.optim.SGD(model.parameters(), lr=1.0), noise_multiplier=0.0, max_grad_norm=clip,
              expected_batch_size=1, loss_reduction="sum")
    if by_person:
        opt.set_identities(ids)
    nn.functional.cross_entropy(model(x), y, reduction="sum").backward()
    opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()]) - start


def test_a_person_with_30_photos_moves_one_update_by_at_most_the_clip_norm():
    x, y, ids = people()
    others = ids != 0
    for clip in (0.5, 1.0):
        by_person = (one_update(x, y, ids, by_person=True, clip=clip) - one_update(x[others], y[others], ids[others],
                                                                                  by_person=True, clip=clip)).norm()
        by_photo = (one_update(x, y, ids, by_person=False, clip=clip) - one_update(x[others], y[others], ids[others],
                                                                                  by_person=False, clip=clip)).norm()
        assert by_person <= clip * (1 + 1e-4), (clip, float(by_person))
        assert by_photo > 10 * clip, float(by_photo)  # photo-level clipping lets the person move it up to 30 clip norms


def test_epsilon_is_opacus_accountant_at_the_identity_sample_rate_and_training_runs():
    x, y, ids = people(photos_of_big=30, small=15)
    names = [f"person_{int(i)}" for i in ids]
    model = nn.Linear(8, 3)
    state, loader = make_identity_private(model, torch.optim.SGD(model.parameters(), lr=0.1), TensorDataset(x, y), names,
                                          noise_multiplier=1.1, max_grad_norm=1.0, expected_identities=4, delta=1e-5,
                                          accountant="rdp", generator=torch.Generator().manual_seed(0))
    assert state.n_identities == 16 and state.largest_identity == 30 and state.sample_rate == pytest.approx(4 / 16)
    steps = sizes = empties = 0
    for _ in range(3):
        for (xb, yb), idb in loader:
            state.optimizer.zero_grad()
            state.optimizer.set_identities(idb)
            if len(xb):  # an empty Poisson draw still takes a (noise-only) step
                nn.functional.cross_entropy(state.grad_sample_module(xb), yb).backward()
            before = state.grad_sample_module._module.weight.detach().clone()
            state.optimizer.step()
            assert not torch.equal(before, state.grad_sample_module._module.weight)  # noise moved it, empty or not
            steps += 1
            sizes += len(torch.unique(idb))
            empties += not len(xb)
    assert steps == 3 * 4  # an epoch is 1 / q steps
    ref = create_accountant("rdp")
    ref.history = [(1.1, 4 / 16, steps)]
    assert state.epsilon() == pytest.approx(ref.get_epsilon(delta=1e-5), rel=1e-9)
    assert identity_epsilon(1.1, 4 / 16, steps, 1e-5, "rdp") == pytest.approx(state.epsilon(), rel=1e-9)
    assert 2 <= sizes / steps <= 6  # about q x 16 = 4 people per step


def test_batches_hold_whole_people():
    ids = torch.tensor([0, 0, 0, 1, 2, 2, 3, 3, 3, 3])
    for batch in IdentityPoissonSampler(ids, 0.5, 50, generator=torch.Generator().manual_seed(1)):
        chosen = set(ids[batch].tolist())
        assert sorted(batch) == sorted(i for i in range(len(ids)) if int(ids[i]) in chosen)


def test_data_without_identity_labels_is_refused_with_the_reason():
    x, y, _ = people()
    model = nn.Linear(8, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(IdentityLabelError, match="needs the person each training photo shows"):
        make_identity_private(model, opt, TensorDataset(x, y), None, noise_multiplier=1.0, max_grad_norm=1.0,
                              expected_identities=2)
    with pytest.raises(IdentityLabelError, match="one identity label per training photo: got 3 labels for 45 photos"):
        identity_index(["a", "b", "c"], 45)
    with pytest.raises(IdentityLabelError, match="have no identity label"):
        identity_index(["a", None, "c"], 3)
    dp = IdentityDPOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), noise_multiplier=1.0, max_grad_norm=1.0,
                             expected_batch_size=1)
    gsm = GradSampleModule(model)
    nn.functional.cross_entropy(gsm(x), y).backward()
    with pytest.raises(IdentityLabelError, match="call set_identities"):
        dp.step()


def test_group_privacy_of_photo_level_dp_is_vacuous_for_a_person_with_30_photos():
    assert group_privacy(2.0, 1e-5, 1) == (2.0, pytest.approx(1e-5))
    eps, delta = group_privacy(2.0, 1e-5, 30)
    assert eps == 60.0 and delta == 1.0  # no guarantee left
    assert group_privacy(math.inf, 1e-5, 3) == (math.inf, 1.0)


def test_an_empty_draw_of_people_takes_a_noise_only_step_that_is_accounted():
    x, y, ids = people()
    model = nn.Linear(8, 3)
    state, loader = make_identity_private(model, torch.optim.SGD(model.parameters(), lr=0.1), TensorDataset(x, y), ids,
                                          noise_multiplier=1.0, max_grad_norm=1.0, expected_identities=0.01,
                                          steps_per_epoch=5, generator=torch.Generator().manual_seed(0))
    batches = list(loader)
    assert all(len(b[1]) == 0 and b[0][0].shape == (0, 8) for b in batches)  # nobody drawn, data-shaped empty rows
    before = model.weight.detach().clone()
    state.optimizer.zero_grad()
    state.optimizer.step()  # no backward pass at all
    assert not torch.equal(before, model.weight) and len(state.accountant) == 1
