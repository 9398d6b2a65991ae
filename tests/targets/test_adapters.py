"""Adapters and callbacks on LightningModules privgan did not write: forward-hook split points, generator attributes, folders."""

import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from privgan.callbacks import InversionAttack, MembershipAttack, PrivacyUtilityCurve
from privgan.callbacks.gan_membership import GanMembershipAttack
from privgan.callbacks.identity_match import IdentityMatchAttack
from privgan.data.planted import edited_copies
from privgan.data.reference_folder import ReferenceFolder
from privgan.targets.adapters import (
    HookedClient,
    classifier_target,
    discriminator_scorer,
    gan_target,
    generator_sampler,
    resolve_client,
    split_target,
)
from privgan.targets.kinds import ClassifierTarget, GanTarget, SplitTarget
from tests.lfw_helpers import one_thread


def _trainer(tmp_path, callbacks, epochs=1):
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, callbacks=callbacks)


class PlainNet(L.LightningModule):
    """A classifier in plain Lightning style: an encoder, then a head; no client(), no privgan base class."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
        self.head_calls = 0

    def forward(self, x):
        z = self.encoder(x)
        self.head_calls += 1
        return self.head(z)

    def training_step(self, batch, _):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), 1e-3)


# -- adapters as plain functions -------------------------------------------------------------------
def test_hooked_client_reads_the_layer_and_skips_the_rest():
    net = PlainNet()
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    client = HookedClient(net, "encoder")
    z = client(x)
    assert torch.equal(z, net.encoder(x)) and net.head_calls == 0
    z.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(HookedClient(net, "encoder.0")(x), net.encoder[0](x))
    with pytest.raises(TypeError, match=r"no sub-module 'encodr'.*encoder"):
        HookedClient(net, "encodr")
    with pytest.raises(TypeError, match="split_layer"):
        resolve_client(net, None, "InversionAttack")


def test_generator_and_discriminator_attributes():
    class Foreign(nn.Module):
        def __init__(self):
            super().__init__()
            self.hparams = {"z_dim": 6}
            self.net_g = nn.Sequential(nn.Linear(6, 3 * 4 * 4), nn.Tanh(), nn.Unflatten(1, (3, 4, 4)))
            self.net_d = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 1))

    m = Foreign()
    sample = generator_sampler("net_g")
    a = sample(m, 5, torch.Generator().manual_seed(1))
    b = sample(m, 5, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (5, 3, 4, 4) and 0 <= a.min() and a.max() <= 1  # tanh mapped to [0, 1]
    z = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a, (m.net_g(z) + 1) / 2)
    scores = discriminator_scorer(m, "net_d")(a)
    assert torch.allclose(scores, m.net_d(a * 2 - 1).squeeze(1), atol=1e-6)  # fed back in [-1, 1]
    bare = nn.Module()
    bare.net_g = m.net_g
    with pytest.raises(TypeError, match="latent size"):
        generator_sampler("net_g")(bare, 2, torch.Generator())
    with pytest.raises(TypeError, match="'gen'.*net_g"):
        generator_sampler("gen", latent_dim=6)(m, 2, torch.Generator())
    with pytest.raises(ValueError, match="output_range"):
        generator_sampler("net_g", output_range="sigmoid")


def test_targets_from_foreign_modules():
    """gan_target / split_target / classifier_target: what each attack runs against, built from any module."""

    class Foreign(nn.Module):
        def __init__(self, scale=1.0):
            super().__init__()
            self.net_g = nn.Sequential(nn.Linear(6, 3 * 4 * 4), nn.Tanh(), nn.Unflatten(1, (3, 4, 4)))
            self.scale = scale

    m = Foreign()
    target = gan_target(m, generator_attr="net_g", latent_dim=6, batch_size=3)
    assert isinstance(target, GanTarget) and target.discriminator_scores is None
    a = target.draw(7, seed=1)
    assert a.shape == (7, 3, 4, 4) and 0 <= a.min() and a.max() <= 1
    assert target.draw(7, seed=1) is a  # drawn once per (n, seed), kept in the bank
    fresh = gan_target(m, generator_attr="net_g", latent_dim=6, batch_size=3).draw(7, seed=1)
    assert torch.equal(fresh, a)  # a new target (empty bank) draws the same latent points for the seed
    assert not torch.equal(target.draw(7, seed=2), a)
    with pytest.raises(ValueError, match="output_range='tanh'"):  # a tanh generator taken for [0, 1]
        gan_target(m, generator_attr="net_g", latent_dim=6, output_range="unit").draw(50, seed=0)

    net = PlainNet()
    split = split_target(net, split_layer="encoder")
    assert isinstance(split, SplitTarget)
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(split.observe(x), net.encoder(x)) and net.head_calls == 0

    clf = classifier_target(net)
    assert isinstance(clf, ClassifierTarget) and torch.equal(clf.logits(x), net(x))
    copy = clf.make_network()
    assert type(copy) is PlainNet and not torch.equal(copy.encoder[0].weight, net.encoder[0].weight)


# -- a split model privgan did not write, attacked through a hook and a folder ------------------------
def _write_folder(root: Path, part: str, x: torch.Tensor, y: torch.Tensor) -> None:
    for i, (img, lab) in enumerate(zip(x, y)):
        d = root / part / f"id{int(lab)}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(d / f"{i:03d}.png")


def test_inversion_and_membership_on_a_plain_split_model_with_a_reference_folder(tmp_path, seed=0):
    L.seed_everything(seed)
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(4, 3, 1, 1, generator=g)

    def faces(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 4
        blobs = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(16, 16), mode="bilinear", align_corners=False)
        return (0.5 * centres[y] + 0.5 * blobs).clamp(0, 1), y  # spatial layout that pooled features cannot keep

    (xm, ym), (xh, yh), (xa, ya) = faces(32), faces(32), faces(32)
    for part, (x, y) in {"members": (xm, ym), "heldout": (xh, yh), "auxiliary": (xa, ya)}.items():
        _write_folder(tmp_path / "refs", part, x, y)
    refs = ReferenceFolder(tmp_path / "refs", image_size=16, align=False)
    assert torch.allclose(refs.members().images, xm[ym.argsort(stable=True)], atol=1 / 255)
    train = DataLoader(TensorDataset(xm, ym), batch_size=8)  # a plain loader: no privgan DataModule

    def inversion(layer: str) -> InversionAttack:
        return InversionAttack(split_layer=layer, references=refs, config={
            "n_targets": 8, "whitebox_steps": 100, "tv_weights": (0.0,), "decoder": False, "reid_threshold": 0.99,
            "embedder": "sface", "n_gallery": 2})

    shallow, deep = inversion("encoder"), inversion("head.1")
    mia = MembershipAttack(references=refs, config={"shadow_models": 0, "n_boot": 20})
    with one_thread():
        _trainer(tmp_path / "a", [shallow, mia, PrivacyUtilityCurve(utility_key="train_loss")]).fit(PlainNet(), train)
        _trainer(tmp_path / "b", [deep]).fit(PlainNet(), train)
    # the conv features keep the picture; 16 pooled numbers do not
    psnr = {cb.split_layer: cb.last_result.signals["psnr_db"].value for cb in (shallow, deep)}
    assert psnr["encoder"] > psnr["head.1"] + 8, psnr
    assert shallow.last_result.best == "whitebox_tv0" and shallow.last_result.signals["psnr_db"].chance is None
    assert mia.last_result.values["n_members"] == 32, mia.last_result.values
    assert set(mia.last_result.scores) == {"loss"}  # no shadow models asked for: the loss attack alone


def test_reference_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ReferenceFolder(tmp_path / "nope")
    (tmp_path / "r" / "members" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "r" / "members" / "a" / "x.png")
    refs = ReferenceFolder(tmp_path / "r", align=False, image_size=8)
    assert len(refs.members()) == 1
    with pytest.raises(FileNotFoundError, match=r"r/auxiliary"):
        refs.auxiliary()
    with pytest.raises(ValueError, match="none of the sub-folders"):
        (tmp_path / "empty").mkdir()
        ReferenceFolder(tmp_path / "empty")


# -- a GAN privgan did not write: generator / discriminator attributes, LFW reference folder ----------
class ReplayGAN(L.LightningModule):
    """A plain-Lightning 'GAN' whose generator replays edited photos it was given (a planted leak)."""

    def __init__(self, photos: torch.Tensor, latent_dim: int = 16):
        super().__init__()
        self.save_hyperparameters({"latent_dim": latent_dim})
        self.generator = _Replay(photos * 2 - 1)
        self.discriminator = nn.Sequential(nn.Conv2d(3, 4, 4, 4), nn.Flatten(), nn.LazyLinear(1))
        self.discriminator(torch.zeros(1, *photos.shape[1:]))
        self.dummy = nn.Parameter(torch.zeros(1))

    def training_step(self, batch, _):
        return self.dummy.sum() * 0 + self.discriminator(batch[0] * 2 - 1).mean() * 0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), 0.0)


class _Replay(nn.Module):
    def __init__(self, photos: torch.Tensor):
        super().__init__()
        self.register_buffer("photos", photos)
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        idx = (z[:, 0].abs() * 1e4).long() % len(self.photos)
        return self.photos[idx] + self.anchor


@pytest.mark.lfw
def test_identity_match_on_a_foreign_gan_with_a_reference_folder(small_face_tree, tmp_path):
    refs = tmp_path / "refs"
    plan = {"members": {"Colin_Powell": (0, 4), "Tony_Blair": (0, 4)},
            "heldout": {"Colin_Powell": (4, 8), "Tony_Blair": (4, 8)},
            "nonmembers": {n: (0, 4) for n in ("Donald_Rumsfeld", "Gerhard_Schroeder", "Hugo_Chavez", "Ariel_Sharon",
                                               "Jean_Chretien", "John_Ashcroft", "Junichiro_Koizumi", "Jacques_Chirac")}}
    for part, people in plan.items():
        for name, (a, b) in people.items():
            (refs / part / name).mkdir(parents=True)
            for f in sorted((small_face_tree / name).iterdir())[a:b]:
                shutil.copy(f, refs / part / name / f.name)
    folder = ReferenceFolder(refs, image_size=32)
    with one_thread():
        train = folder.train_images()
        gan = ReplayGAN(edited_copies(train, generator=torch.Generator().manual_seed(0)))
        ident = IdentityMatchAttack(generator_attr="generator", references=str(refs), config={
            "n_samples": 64, "n_boot": 50, "score": "max", "fd": False, "n_gallery": 2, "verify_threshold": 0.36})
        mia = GanMembershipAttack(generator_attr="generator", discriminator_attr="discriminator", references=folder,
                                  config={"n_samples": 64, "n_boot": 20, "ganleaks_embed": False})
        loader = DataLoader(TensorDataset(train), batch_size=4)
        _trainer(tmp_path / "run", [ident, mia]).fit(gan, loader)
    r = ident.last_result
    assert r.values["n_members"] == 2 and r.values["n_identities"] - r.values["n_members"] == 8
    assert r.signals["auc"].value == 1.0, r.signals["auc"]  # replayed members outrank everyone
    assert r.verdict == "leak" and "auc" in r.leaking
    assert r.values["samples_matching_members"] > r.values["samples_matching_nonmembers"]
    assert r.values["verify_share"] >= 0.9  # replayed photos verify as real people
    assert 0.0 <= r.values["verify_share_real"] <= 1.0
    assert {"ganleaks_pixel_auc", "logan_auc"} <= set(mia.last_result.signals)  # LOGAN through discriminator_attr
    assert (tmp_path / "run" / "identity_match" / "epoch_000_gallery.png").exists()


def test_latent_distribution_of_a_foreign_generator_and_the_saturation_warning():
    """A generator trained on uniform codes saturates when fed normal ones: the attack says so; uniform codes do not."""
    from privgan.targets.adapters import gan_target

    class UniformGAN(nn.Module):
        def __init__(self):
            super().__init__()
            self.latent_dim = 8
            self.generator = nn.Sequential(nn.Linear(8, 3 * 4 * 4), nn.Tanh(), nn.Unflatten(1, (3, 4, 4)))
            with torch.no_grad():  # weights ±1: pre-activations of std 1.6 on U(-1, 1) codes, 2.8 on N(0, 1) codes
                self.generator[0].weight.copy_(torch.randn(48, 8, generator=torch.Generator().manual_seed(0)).sign())
                self.generator[0].bias.zero_()

    m = UniformGAN()
    normal = gan_target(m, generator_attr="generator", latent_distribution="normal")
    uniform = gan_target(m, generator_attr="generator", latent_distribution="uniform")
    assert normal.saturation_note(256) is not None and "latent_distribution" in normal.saturation_note(256)
    assert uniform.saturation_note(256) is None
    with pytest.raises(ValueError, match="latent_distribution"):
        gan_target(m, generator_attr="generator", latent_distribution="laplace")
