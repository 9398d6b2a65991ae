"""Inversion attacks on planted clients: invertible ones must be inverted, blind ones must not."""

from __future__ import annotations

import dataclasses
from typing import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from privgan.attacks.inversion import (
    DecoderInversion,
    Reconstructions,
    normalised_feature_loss,
    total_variation,
    whitebox_invert,
)
from privgan.metrics.image_quality import psnr_db
from privgan.models.decoders import InverseDecoder


def smooth_images(n: int, *, size: int, seed: int, low: int = 4) -> torch.Tensor:
    """Smooth random images in [0, 1]: low-res uniform noise upsampled bilinearly."""
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, 3, low, low, generator=g)
    return F.interpolate(z, size=(size, size), mode="bilinear", align_corners=False)


def orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed)))
    return q


def linear_client(seed: int = 0) -> nn.Module:
    """Invertible client on 3 x 8 x 8 images: flatten, then a random orthogonal 192 x 192 map."""
    lin = nn.Linear(192, 192, bias=False)
    with torch.no_grad():
        lin.weight.copy_(orthogonal(192, seed))
    return nn.Sequential(nn.Flatten(1), lin)


def unshuffle_client(seed: int = 0) -> nn.Module:
    """Invertible conv client on 3 x 16 x 16 images: space-to-depth to 12 x 8 x 8, orthogonal 1x1 conv."""
    conv = nn.Conv2d(12, 12, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(orthogonal(12, seed).view(12, 12, 1, 1))
    return nn.Sequential(nn.PixelUnshuffle(2), conv)


def mean_image_psnr(reference: torch.Tensor, targets: torch.Tensor) -> float:
    """PSNR of the best blind guess: always predicting the reference set's mean image."""
    return float(psnr_db(reference.mean(0, keepdim=True).expand_as(targets), targets).mean())


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models: one intra-op thread is as fast, and far faster when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_images() -> torch.Tensor:
    return smooth_images(16, size=8, seed=0, low=3)


# ------------------------------------------------------------------ white box


def test_whitebox_inverts_invertible_linear_client(small_images: torch.Tensor) -> None:
    client = linear_client()
    observed = client(small_images).detach()
    rec = whitebox_invert(client, observed, image_shape=(3, 8, 8), tv_weight=0.0, originals=small_images)
    m = rec.metrics()
    assert m["psnr_db"] > 35 and m["psnr_db_median"] > 35
    assert m["ssim"] > 0.99
    assert rec.attack == "whitebox_tv0"
    assert rec.reconstructions.shape == small_images.shape
    assert rec.reconstructions.min() >= 0 and rec.reconstructions.max() <= 1
    assert rec.feature_loss.shape == (16,) and (rec.feature_loss < 1e-3).all()
    assert rec.seconds > 0


def test_whitebox_noise_degrades_monotonically(small_images: torch.Tensor) -> None:
    client = linear_client()
    clean = client(small_images).detach()
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    psnrs = []
    for sigma in (0.0, 0.05, 0.2, 0.5):
        rec = whitebox_invert(
            client, clean + sigma * noise, image_shape=(3, 8, 8), steps=200, tv_weight=0.0, originals=small_images
        )
        psnrs.append(rec.metrics()["psnr_db"])
    assert all(a > b + 3 for a, b in zip(psnrs, psnrs[1:])), psnrs
    assert psnrs[1] < psnrs[0] - 10, psnrs


@pytest.mark.parametrize(
    "client",
    [lambda x: torch.zeros(len(x), 16), lambda x: 0.0 * x.flatten(1) + 1.0],
    ids=["zeros_detached", "constant_in_graph"],
)
def test_whitebox_on_uninformative_client_is_no_better_than_mean(small_images: torch.Tensor, client) -> None:
    rec = whitebox_invert(
        client,
        client(small_images).detach(),
        image_shape=(3, 8, 8),
        steps=50,
        tv_weight=0.0,
        restarts=2,
        generator=torch.Generator().manual_seed(0),
        originals=small_images,
    )
    m = rec.metrics()
    assert m["psnr_db"] <= mean_image_psnr(small_images, small_images) + 1.0
    assert m["ssim"] < 0.3


def test_whitebox_restarts_pick_lowest_feature_loss_without_originals(small_images: torch.Tensor) -> None:
    client = linear_client()
    observed = client(small_images).detach() + 0.1 * torch.randn(16, 192, generator=torch.Generator().manual_seed(2))
    kw = dict(image_shape=(3, 8, 8), steps=30, tv_weight=0.1)
    one = whitebox_invert(client, observed, restarts=1, generator=torch.Generator().manual_seed(0), **kw)
    three = whitebox_invert(
        client, observed, restarts=3, generator=torch.Generator().manual_seed(0), originals=small_images, **kw
    )
    decoy = whitebox_invert(
        client, observed, restarts=3, generator=torch.Generator().manual_seed(0), originals=1 - small_images, **kw
    )
    # restart 0 (grey) is the same in both runs; keeping the per-sample minimum can only lower the loss
    assert (three.feature_loss <= one.feature_loss + 1e-7).all()
    # the originals are only carried along for scoring, never used to choose
    assert torch.equal(three.reconstructions, decoy.reconstructions)
    assert one.originals is None
    with pytest.raises(ValueError):
        one.metrics()


class _SplitNet(nn.Module):
    """A small split model with batch norm (running stats would move in train mode) and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8 * 8 * 8, 2)
        self.head.eval()  # a submodule with its own mode, which must be restored as it was
        self.modes_seen: list[bool] = []

    def client(self, x: torch.Tensor) -> torch.Tensor:
        self.modes_seen.append(self.features[1].training)
        return self.features(x)


@pytest.mark.parametrize("as_bound_method", [False, True])
def test_attacks_leave_client_untouched(small_images: torch.Tensor, as_bound_method: bool) -> None:
    torch.manual_seed(0)
    net = _SplitNet()
    net.features.train()
    net.features[0].bias.requires_grad_(False)  # a frozen parameter must stay frozen
    client = net.client if as_bound_method else net.features
    with torch.no_grad():
        observed = net.features(small_images)  # train mode: moves running stats, before the snapshot
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.modes_seen.clear()

    whitebox_invert(client, observed, image_shape=(3, 8, 8), steps=5, restarts=2)
    DecoderInversion(feature_shape=(8, 8, 8), image_shape=(3, 8, 8), width=4, epochs=1, batch_size=8).fit(
        client, small_images, transmit=lambda z: z + 0.1 * torch.randn_like(z)
    ).reconstruct(observed, small_images)

    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights or running stats changed"
    assert all(p.grad is None for p in net.parameters())
    assert [p.requires_grad for p in net.parameters()] == [True, False, True, True, True, True]
    assert net.training and net.features.training and net.features[1].training and not net.head.training
    if as_bound_method:
        assert net.modes_seen and not any(net.modes_seen), "client must run in eval mode during the attack"


def test_whitebox_writes_no_grad_to_tensors_the_client_captures(small_images: torch.Tensor) -> None:
    w = orthogonal(192, 3).requires_grad_(True)  # a plain closure over a tensor that requires grad
    client = lambda x: x.flatten(1) @ w.T  # noqa: E731
    observed = client(small_images).detach()
    whitebox_invert(client, observed, image_shape=(3, 8, 8), steps=5)
    assert w.grad is None


# ------------------------------------------------------------------ learned decoder


@pytest.fixture(scope="module")
def decoder_data() -> tuple[torch.Tensor, torch.Tensor]:
    return smooth_images(512, size=16, seed=10), smooth_images(64, size=16, seed=11)


def test_decoder_inverts_invertible_client(decoder_data: tuple[torch.Tensor, torch.Tensor]) -> None:
    aux, held_out = decoder_data
    client = unshuffle_client()
    attack = DecoderInversion(feature_shape=(12, 8, 8), image_shape=(3, 16, 16), width=16, epochs=20)
    attack.fit(client, aux)
    rec = attack.reconstruct(client(held_out).detach(), held_out)
    baseline = mean_image_psnr(aux, held_out)
    m = rec.metrics()
    assert m["psnr_db"] > baseline + 8, (m, baseline)
    assert m["ssim"] > 0.8
    assert rec.attack == "decoder_w16"
    assert len(attack.train_loss_) == 20 and attack.train_loss_[-1] < attack.train_loss_[0]
    assert isinstance(attack.decoder_, InverseDecoder) and not attack.decoder_.training
    assert rec.feature_loss.shape == (64,)


def test_decoder_on_constant_client_does_not_beat_mean(decoder_data: tuple[torch.Tensor, torch.Tensor]) -> None:
    aux, held_out = decoder_data
    client = lambda x: torch.zeros(len(x), 12, 8, 8)  # noqa: E731
    attack = DecoderInversion(feature_shape=(12, 8, 8), image_shape=(3, 16, 16), width=16, epochs=10)
    rec = attack.fit(client, aux).reconstruct(client(held_out), held_out)
    assert rec.metrics()["psnr_db"] <= mean_image_psnr(aux, held_out) + 1.0


def test_decoder_with_noise_defence_is_worse(decoder_data: tuple[torch.Tensor, torch.Tensor]) -> None:
    aux, held_out = decoder_data[0][:256], decoder_data[1]
    client = unshuffle_client()
    sigma = 1.0  # about twice the features' RMS
    observed_clean = client(held_out).detach()
    noise = torch.randn(observed_clean.shape, generator=torch.Generator().manual_seed(5))

    def psnr(transmit, observed: torch.Tensor) -> float:  # type: ignore[no-untyped-def]
        attack = DecoderInversion(feature_shape=(12, 8, 8), image_shape=(3, 16, 16), width=16, epochs=8, seed=3)
        return attack.fit(client, aux, transmit=transmit).reconstruct(observed, held_out).metrics()["psnr_db"]

    clean = psnr(None, observed_clean)
    noisy = psnr(lambda z: z + sigma * torch.randn_like(z), observed_clean + sigma * noise)
    assert noisy < clean - 2, (noisy, clean)
    assert noisy > mean_image_psnr(aux, held_out) + 0.5  # noise hurts but some signal remains


def test_decoder_fit_is_seeded_and_leaves_global_rng_alone(decoder_data: tuple[torch.Tensor, torch.Tensor]) -> None:
    aux = decoder_data[0][:64]
    client = unshuffle_client()
    transmit = lambda z: z + 0.5 * torch.randn_like(z)  # noqa: E731

    def losses(seed: int) -> list[float]:
        attack = DecoderInversion(
            feature_shape=(12, 8, 8), image_shape=(3, 16, 16), width=4, epochs=2, batch_size=16, seed=seed
        )
        return attack.fit(client, aux, transmit=transmit).train_loss_

    state = torch.get_rng_state()
    first = losses(0)
    assert torch.equal(torch.get_rng_state(), state), "fit must not consume the global RNG"
    assert losses(0) == first  # same init, batch order and transmit noise
    assert losses(1) != first


def test_decoder_rejects_wrong_feature_shape(decoder_data: tuple[torch.Tensor, torch.Tensor]) -> None:
    with pytest.raises(ValueError):
        DecoderInversion(feature_shape=(12, 4, 4), image_shape=(3, 16, 16), epochs=1).fit(
            unshuffle_client(), decoder_data[0][:8]
        )
    with pytest.raises(RuntimeError):
        DecoderInversion(feature_shape=(12, 8, 8), image_shape=(3, 16, 16)).reconstruct(torch.zeros(2, 12, 8, 8))


# ------------------------------------------------------------------ pieces


@pytest.mark.parametrize(
    "feature_shape",
    [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (3, 64, 64), (10, 7, 7), (512,)],
)
def test_inverse_decoder_handles_every_split_depth(feature_shape: tuple[int, ...]) -> None:
    dec = InverseDecoder(feature_shape, (3, 64, 64), width=8)
    out = dec(torch.randn(2, *feature_shape))
    assert out.shape == (2, 3, 64, 64)
    assert out.min() >= 0 and out.max() <= 1
    out.mean().backward()
    assert all(p.grad is not None for p in dec.parameters())


def test_inverse_decoder_rejects_wrong_features() -> None:
    with pytest.raises(ValueError):
        InverseDecoder((8, 4, 4), (3, 16, 16), width=4)(torch.randn(2, 8, 8, 8))


def test_reconstructions_is_frozen_and_reports_metrics(small_images: torch.Tensor) -> None:
    rec = Reconstructions(
        originals=small_images,
        reconstructions=(small_images + 0.1).clamp(0, 1),
        attack="test",
        feature_loss=torch.zeros(16),
        seconds=0.0,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.attack = "other"  # type: ignore[misc]
    m = rec.metrics()
    assert set(m) == {"psnr_db", "psnr_db_median", "ssim", "ssim_median", "feature_loss"}
    assert 19.5 < m["psnr_db"] < 25  # offset 0.1 is 20 dB before clamping to [0, 1]


def test_feature_loss_is_scale_free_and_tv_zero_on_constants() -> None:
    z = torch.randn(4, 32, generator=torch.Generator().manual_seed(0))
    p = z + 0.1 * torch.randn(4, 32, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(normalised_feature_loss(p, z), normalised_feature_loss(100 * p, 100 * z))
    assert torch.equal(total_variation(torch.full((2, 3, 5, 5), 0.3)), torch.zeros(2))
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 3, 4, 4)
    assert total_variation(ramp).item() == pytest.approx(1.0)


# ------------------------------------------------------------------ the registered attack


def test_registered_inversion_inverts_an_invertible_client_and_not_a_blind_one(synthetic_view) -> None:
    """run_attack("inversion") on planted clients: an invertible split leaks (re-identified), a constant one does not."""
    from privgan.attacks import run_attack
    from privgan.targets.kinds import SplitTarget

    config = {"n_targets": 8, "whitebox_steps": 80, "tv_weights": (0.0,), "decoder": False, "pair_far": 0.05, "n_gallery": 2}
    leaky = run_attack("inversion", SplitTarget(client=unshuffle_client()), synthetic_view, config)
    blind = run_attack("inversion", SplitTarget(client=lambda x: torch.zeros(len(x), 12, 8, 8)), synthetic_view, config)
    for r in (leaky, blind):
        assert r.headline == "reid_top1" and r.best == "whitebox_tv0" and r.values["n_targets"] == 8
        assert r.signals["reid_top1"].chance == pytest.approx(1 / 4) and r.signals["reid_rate"].chance == 0.05
        assert r.signals["psnr_db"].chance is None and r.signals["ssim"].chance is None  # reported, never deciding
        assert len(r.images["gallery"].rows) == 2 and r.images["gallery"].rows[0].shape == (2, 3, 16, 16)
    assert leaky.signals["psnr_db"].value > blind.signals["psnr_db"].value + 10
    assert leaky.signals["reid_top1"].value >= 0.75 and leaky.verdict == "leak" and "reid_top1" in leaky.leaking
    assert blind.verdict == "no leak found", blind.leaking
    # linkage without pixels: the invertible client's features name the person, the constant one's do not
    assert leaky.signals["linkage_top1"].value >= 0.9 and "linkage_top1" in leaky.leaking
    assert blind.signals["linkage_top1"].chance == pytest.approx(1 / 4) and "linkage_top1" not in blind.leaking


def test_linkage_picks_the_candidate_whose_photos_are_closest() -> None:
    from privgan.attacks.linkage import link_features

    g = torch.Generator().manual_seed(0)
    people = torch.randn(5, 64, generator=g)
    cand_labels = torch.arange(5).repeat_interleave(3)
    cands = people[cand_labels] + 0.3 * torch.randn(15, 64, generator=g)
    labels = torch.tensor([4, 0, 2, 2, 1])
    observed = people[labels] + 0.3 * torch.randn(5, 64, generator=g)
    assert torch.equal(link_features(observed, cands, cand_labels + 10), labels + 10)  # labels as given, not positions
    with pytest.raises(ValueError, match="at least one candidate"):
        link_features(observed, cands[:0], cand_labels[:0])


def test_decoder_stops_when_held_out_loss_levels_off_and_flags_when_cut_short(decoder_data) -> None:
    """Attack strength must not decide the conclusion silently: a decoder cut short says it did not converge."""
    aux, held_out = decoder_data
    short = DecoderInversion(feature_shape=(12, 8, 8), image_shape=(3, 16, 16), width=16, epochs=2).fit(unshuffle_client(), aux)
    assert not short.converged_ and not short.reconstruct(unshuffle_client()(held_out), held_out).converged
    blind = lambda x: torch.zeros(len(x), 12, 8, 8)  # noqa: E731 - nothing to learn beyond the mean face
    long = DecoderInversion(feature_shape=(12, 8, 8), image_shape=(3, 16, 16), width=8, epochs=80).fit(blind, aux)
    assert long.converged_ and len(long.val_loss_) < 80  # stopped early on the held-out auxiliary faces
    assert len(long.train_loss_) == len(long.val_loss_)


def test_unconverged_inversion_is_inconclusive_never_no_leak(synthetic_view) -> None:
    from privgan.attacks import run_attack
    from privgan.targets.kinds import SplitTarget

    blind = SplitTarget(client=lambda x: torch.zeros(len(x), 12, 8, 8))
    r = run_attack("inversion", blind, synthetic_view, {"n_targets": 8, "whitebox": False, "decoder_epochs": 1,
                                                        "decoder_width": 8, "pair_far": 0.05, "n_gallery": 0})
    assert not r.converged and r.verdict == "inconclusive" and any("did not converge" in n for n in r.notes)
    assert "decoder_loss_0" in r.values  # the attacker's learning curve is in the Result
