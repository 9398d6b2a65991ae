"""Model inversion of a face classifier: planted truths on real LFW faces."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from privgan.attacks import run_attack
from privgan.targets.kinds import ClassifierTarget
from privgan.targets.view import AttackerView, Photos
from tests.attacks.test_prior_inversion import _crops
from tests.lfw_helpers import lfw_identities, one_thread

pytestmark = pytest.mark.lfw


def _classifier(x: torch.Tensor, y: torch.Tensor, n_classes: int, *, epochs: int) -> nn.Module:
    """A small CNN trained on ``x`` (mirrored at random): class c knows only person c's photos."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(64, n_classes))
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(32):
            xb = torch.where(torch.rand(len(idx), 1, 1, 1, generator=g) < 0.5, x[idx].flip(-1), x[idx])
            loss = F.cross_entropy(net(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def study(lfw_dir):
    """8 people with 20 photos (15 train the classifier, 5 are held out) and 150 auxiliary people for the eigenface prior."""
    people = lfw_identities(lfw_dir, min_images=20, count=8, seed=5)
    x, y = _crops(lfw_dir, people, 20)
    aux = lfw_identities(lfw_dir, min_images=4, count=150, seed=6, exclude=set(people))
    ax, ay = _crops(lfw_dir, aux, 4)
    train = torch.arange(len(x)) % 20 < 15
    view = AttackerView(members=Photos(x[train], y[train], tuple(people)), heldout=Photos(x[~train], y[~train], tuple(people)),
                        auxiliary=Photos(ax, ay))
    return view, x[train], y[train]


@pytest.mark.slow
def test_inverting_a_face_classifier_names_its_people_above_chance(study):
    """Each class was trained on one person only: the images that maximise it look like that person to SFace."""
    view, x, y = study
    with one_thread():
        net = _classifier(x, y, 8, epochs=150)
        r = run_attack("model_inversion", ClassifierTarget(logits=net), view, {"restarts": 16, "steps": 200, "n_gallery": 4})
    every = r.signals["mi_top1_restarts"]
    assert every.chance == pytest.approx(1 / 8) and r.signals["mi_top5"].chance == pytest.approx(5 / 8)
    assert every.ci[0] > every.chance, (r.signals, r.values)
    assert r.verdict == "leak" and r.values["confidence_mean"] > 0.5 and r.values["n_classes"] == 8
    assert "eigenfaces" in r.knowledge and r.images["gallery"].rows[1].shape == (4, 3, 32, 32)


def test_an_untrained_classifier_gives_nothing_away(study):
    """A classifier that never saw the people: its inversions match them at chance, never called a leak."""
    view, _, _ = study
    with one_thread():
        torch.manual_seed(1)
        net = _classifier(view.auxiliary.images[:8], torch.arange(8), 8, epochs=0)
        r = run_attack("model_inversion", ClassifierTarget(logits=net), view, {"restarts": 4, "steps": 100, "n_gallery": 0})
    assert r.verdict != "leak", r.signals
    assert r.signals["mi_top1_restarts"].ci[0] <= 1 / 8
