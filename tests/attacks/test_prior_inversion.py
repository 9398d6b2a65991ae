"""Split inversion with a face prior: planted truths on real LFW faces, and the priors a user can pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from privgan.attacks import run_attack
from privgan.attacks.prior_inversion import gan_prior_invert
from privgan.attacks.priors import linear_prior, load_face_prior
from privgan.targets.kinds import SplitTarget
from privgan.targets.view import AttackerView, Photos
from tests.lfw_helpers import lfw_identities, one_thread

#: A fixed box of LFW's deep-funneled 250 x 250 photos around the face: crops without a detector (fast, cache-free).
BOX = (68, 68, 182, 182)


def _crops(lfw_dir, names: list[str], per: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for k, name in enumerate(names):
        for f in sorted((lfw_dir / name).iterdir())[:per]:
            im = Image.open(f).convert("RGB").crop(BOX).resize((size, size), Image.BILINEAR)
            xs.append(torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255)
            ys.append(k)
    return torch.stack(xs), torch.tensor(ys)


@pytest.fixture(scope="module")
def view(lfw_dir) -> AttackerView:
    """8 people (5 gallery + 3 target photos each) and 150 auxiliary people (4 photos each) whose eigenfaces are the prior."""
    people = lfw_identities(lfw_dir, min_images=8, count=8, seed=5)
    aux = lfw_identities(lfw_dir, min_images=4, count=150, seed=6, exclude=set(people))
    x, y = _crops(lfw_dir, people, 8)
    ax, ay = _crops(lfw_dir, aux, 4)
    gallery = torch.arange(len(x)) % 8 < 5
    return AttackerView(members=Photos(x[gallery], y[gallery], tuple(people)),
                        heldout=Photos(x[~gallery], y[~gallery], tuple(people)), auxiliary=Photos(ax, ay))


CONFIG = {"n_targets": 24, "whitebox": False, "decoder": False, "linkage": False, "prior": "eigenfaces",
          "prior_components": 590, "prior_steps": 200, "prior_restarts": 2, "prior_encoder": False, "n_gallery": 0}


@pytest.mark.lfw
def test_a_face_prior_through_an_invertible_client_re_identifies_the_targets(view):
    """The client sends the image itself: searching the prior's codes recovers faces that SFace verifies (>= 0.9)."""
    with one_thread():
        r = run_attack("inversion", SplitTarget(client=lambda im: im), view, CONFIG)
    assert r.best == "eigenprior" and "face prior: eigenfaces of 600 photos" in r.knowledge
    assert r.signals["eigenprior_reid_rate"].value >= 0.9 * r.values["reid_rate_originals"], (r.signals, r.values)
    assert r.signals["eigenprior_reid_top1"].value >= 0.9
    assert r.verdict == "leak" and r.values["eigenprior_seconds_per_face"] > 0


@pytest.mark.lfw
def test_a_face_prior_through_a_constant_client_finds_no_one(view):
    """A client that sends nothing about the image: the prior's best guess is an average face, at chance."""
    with one_thread():
        r = run_attack("inversion", SplitTarget(client=lambda im: torch.ones(len(im), 4)), view, CONFIG)
    top1 = r.signals["eigenprior_reid_top1"]
    assert r.signals["eigenprior_reid_rate"].value <= 0.1
    assert top1.ci[0] <= top1.chance == pytest.approx(1 / 8)
    assert r.verdict != "leak"


def test_a_privgan_gan_checkpoint_and_its_export_are_the_same_differentiable_prior(tmp_path):
    """load_face_prior reads the EMA generator of a GAN checkpoint without Lightning, and the .pt2 export; gradients reach z."""
    from privgan.modules.gan import GAN

    torch.manual_seed(0)
    gan = GAN(image_size=32, latent_dim=16, g_width=8, d_width=8).eval()
    ckpt = tmp_path / "gan.ckpt"
    torch.save({"hyper_parameters": dict(gan.hparams), "state_dict": gan.state_dict()}, ckpt)
    z = torch.randn(3, 16)
    from_ckpt, from_export = load_face_prior(ckpt), load_face_prior(gan.export_generator(tmp_path / "g.pt2"))
    assert from_ckpt.latent_dim == 16 and from_ckpt.image_size == 32
    torch.testing.assert_close(from_ckpt(z), gan.generate(z), atol=1e-5, rtol=0)
    torch.testing.assert_close(from_export(z), gan.generate(z), atol=1e-5, rtol=0)
    zg = z.clone().requires_grad_(True)
    from_ckpt(zg).sum().backward()
    assert zg.grad is not None and zg.grad.abs().sum() > 0
    assert all(not p.requires_grad for m in from_ckpt.modules for p in m.parameters())
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="junk.ckpt"):
        load_face_prior(tmp_path / "junk.ckpt")
    with pytest.raises(FileNotFoundError, match="gan_lfw_public"):
        load_face_prior(tmp_path / "missing.ckpt")


def test_prior_search_keeps_the_restart_with_the_lowest_feature_loss_and_leaves_the_client_alone():
    """A restart that lands nearer in feature space wins per target; the client's weights and modes are untouched."""
    g = torch.Generator().manual_seed(0)
    faces = torch.rand(40, 3, 8, 8, generator=g)
    prior = linear_prior(faces, 20)
    client = torch.nn.Conv2d(3, 4, 1).train()
    before = {k: v.clone() for k, v in client.state_dict().items()}
    targets = prior(torch.randn(5, prior.latent_dim, generator=g))
    with torch.no_grad():
        observed = client(targets)
    one = gan_prior_invert(client, observed, prior, image_shape=(3, 8, 8), steps=60, restarts=1,
                           generator=torch.Generator().manual_seed(1))
    many = gan_prior_invert(client, observed, prior, image_shape=(3, 8, 8), steps=60, restarts=4,
                            generator=torch.Generator().manual_seed(1))
    assert (many.feature_loss <= one.feature_loss + 1e-6).all()
    assert client.training and all(torch.equal(v, before[k]) for k, v in client.state_dict().items())
    assert all(p.requires_grad for p in client.parameters())
