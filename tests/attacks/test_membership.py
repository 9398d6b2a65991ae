"""Membership attacks: a memorising model must be caught, an untrained one must not."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from privgan.metrics.roc import tpr_at_fpr
from privgan.attacks.membership import (
    ShadowModels,
    fresh_copy,
    logit_confidence,
    loss_attack,
    offline_lira,
    predict_logits,
)
from tests.lfw_helpers import one_thread


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny MLPs: one thread is as fast alone and many times faster when the two cores are shared."""
    with one_thread():
        yield


def _data(n=128, d=32, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)  # random labels: only memorisation fits them
    return x, y


def _mlp(d=32, k=4):
    return nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, k))


def _fit(model, x, y, epochs=300):
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def test_logit_confidence_matches_definition():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 2])
    p = logits.softmax(1)
    expect = torch.log(p[[0, 1], y] / (1 - p[[0, 1], y]))
    assert torch.allclose(logit_confidence(logits, y), expect, atol=1e-5)


def test_loss_attack_catches_memorised_random_labels():
    torch.manual_seed(0)
    x, y = _data()
    members = torch.arange(len(x)) < 64
    model = _fit(_mlp(), x[members], y[members])
    logits = predict_logits(model, x)
    scores = loss_attack(logits, y, members.long())
    assert scores.metrics(n_boot=100)["auc"] > 0.9
    assert tpr_at_fpr(scores.scores, scores.labels, 0.1) > 0.5


def test_untrained_model_scores_near_chance():
    torch.manual_seed(1)
    x, y = _data(n=400)
    members = torch.arange(len(x)) < 200
    logits = predict_logits(_mlp(), x)
    m = loss_attack(logits, y, members.long()).metrics(n_boot=100)
    assert m["auc_ci_low"] < 0.5 < m["auc_ci_high"]


def test_offline_lira_on_memorising_target_with_shadow_models():
    torch.manual_seed(2)
    x, y = _data(n=128)
    members = (torch.arange(len(x)) % 2 == 0)
    target = _fit(_mlp(), x[members], y[members])
    shadow = ShadowModels(_mlp, x, y, k=2, lr=3e-3, batch_size=64, augment_flip=False, seed=3)
    shadow.train(150)
    assert (shadow.in_mask.sum(0) == 1).all()  # complementary halves: each point OUT once
    target_conf = logit_confidence(predict_logits(target, x), y)
    scores = offline_lira(target_conf, shadow.confidences(x, y), shadow.in_mask, members.long())
    m = scores.metrics(n_boot=100)
    assert m["auc"] > 0.9


def test_offline_lira_math_and_out_only():
    target = torch.tensor([3.0, 0.0])
    ref = torch.tensor([[1.0, 100.0], [1.0, 0.0]])  # ref 0 saw example 1 (IN): ignored
    inn = torch.tensor([[False, True], [False, False]])
    s = offline_lira(target, ref, inn, torch.tensor([1, 0]), fixed_variance=True)
    # mu = [1, 0]; OUT residuals all zero -> sigma clamped tiny; order must follow target - mu
    assert s.scores[0] > s.scores[1]


def test_shadow_models_state_round_trip():
    x, y = _data(n=32)
    a = ShadowModels(_mlp, x, y, k=2, seed=0, augment_flip=False)
    a.train(2)
    b = ShadowModels(_mlp, x, y, k=2, seed=0, augment_flip=False)
    b.load_state_dict(a.state_dict())
    assert b.epochs_ == 2
    assert torch.allclose(a.confidences(x, y), b.confidences(x, y))
    a.train(1)
    b.train(1)
    assert torch.allclose(a.confidences(x, y), b.confidences(x, y))


def test_fresh_copy_reinitialises():
    m = _mlp()
    c = fresh_copy(m)
    assert not torch.equal(m[0].weight, c[0].weight)
    assert c[0].weight.shape == m[0].weight.shape


def test_registered_attack_catches_memorisation_and_not_an_untrained_model():
    """run_attack("membership") on a planted leak (random labels, memorised) and on a model that learned nothing."""
    from privgan.attacks import run_attack
    from privgan.targets.kinds import ClassifierTarget
    from privgan.targets.view import AttackerView, Photos

    torch.manual_seed(3)
    x, y = _data(n=128)
    images = x.view(128, 2, 4, 4)  # the view holds images; the networks flatten them
    view = AttackerView(members=Photos(images[:64], y[:64]), heldout=Photos(images[64:], y[64:]))

    def net():
        return nn.Sequential(nn.Flatten(), _mlp())

    target = ClassifierTarget(logits=_fit(net(), images[:64], y[:64]), make_network=net, lr=3e-3)
    r = run_attack("membership", target, view, {"shadow_models": 2, "shadow_epochs": 150, "n_boot": 100})
    assert r.signals["loss_auc"].value > 0.9 and r.signals["lira_offline_auc"].value > 0.7, r.signals
    assert r.verdict == "leak" and r.values["n_members"] == r.values["n_nonmembers"] == 64
    assert r.signals["auc"] == r.signals[f"{r.best}_auc"] and set(r.scores) == {"loss", "lira_offline"}
    untrained = run_attack("membership", ClassifierTarget(logits=net()), view, {"shadow_models": 0, "n_boot": 100})
    assert untrained.signals["auc"].ci[0] < 0.5 < untrained.signals["auc"].ci[1]
    assert untrained.verdict == "no leak found" and set(untrained.scores) == {"loss"}


def test_reference_models_trained_apart_and_merged_equal_those_trained_together():
    """What DDP ranks do with LiRA's reference models: model j trained alone (its own batch generator) is the same model."""
    torch.manual_seed(0)
    x, y = torch.rand(24, 3, 8, 8), torch.randint(0, 3, (24,))

    def factory():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))

    together = ShadowModels(factory, x, y, k=4, seed=5)
    together.train(3)
    apart = [ShadowModels(factory, x, y, k=4, seed=5) for _ in range(2)]  # two "ranks"
    for rank, s in enumerate(apart):
        s.train(3, only=[j for j in range(4) if j % 2 == rank])
    for j in range(4):
        apart[0].load_model_state(j, apart[j % 2].model_state(j))
    assert torch.equal(together.confidences(x, y), apart[0].confidences(x, y))
    assert not torch.equal(together.confidences(x, y), ShadowModels(factory, x, y, k=4, seed=5).confidences(x, y))
