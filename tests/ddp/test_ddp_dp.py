"""DP-SGD on 2 real processes (Lightning's spawn launcher, gloo, CPU): ranks agree, noise once, ε as one process, resume."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy
from opacus.accountants import PRVAccountant

from privgan.callbacks import DPSGDCallback
from privgan.defences.dp import DPSGD
from privgan.modules import GAN, SplitClassifier
from tests.ddp.helpers import TinyImages, ZeroGradientNet, ddp_trainer, read_reports

pytestmark = [pytest.mark.ddp, pytest.mark.timeout(300)]


def opacus_epsilon(noise: float, sample_rate: float, steps: int, delta: float = 1e-5) -> float:
    """ε of one process's Opacus PRV accountant after ``steps`` steps at ``sample_rate``."""
    acc = PRVAccountant()
    acc.history = [(noise, sample_rate, steps)]
    return acc.get_epsilon(delta=delta)


def test_without_dp_both_ranks_end_with_the_same_weights(tmp_path):
    trainer = ddp_trainer(tmp_path, "plain", max_epochs=1)
    trainer.fit(SplitClassifier(width=4, augment=False), TinyImages(batch_size=8))
    r0, r1 = read_reports(tmp_path, "plain")
    assert r0["optimizer"] is None and r0["use_distributed_sampler"]  # DDP as Lightning does it: sharded by its sampler
    assert r0["global_step"] == r1["global_step"] == 4  # 64 images / 2 ranks / batch 8
    assert not torch.equal(r0["start"], r0["end"])
    assert torch.equal(r0["end"], r1["end"])


def test_dp_ranks_agree_step_together_through_empty_batches_and_spend_one_process_s_epsilon(tmp_path):
    # expected global batch 2 of 64 (q = 1/32): each rank expects 1 example a step, so empty batches are common
    trainer = ddp_trainer(tmp_path, "dp", max_epochs=1)
    trainer.fit(SplitClassifier(width=4, dp=DPSGD(noise_multiplier=1.0)), TinyImages(batch_size=2))
    r0, r1 = read_reports(tmp_path, "dp")
    for r in (r0, r1):
        assert r["optimizer"] == "DistributedDPOptimizer"
        assert not r["use_distributed_sampler"]
        assert r["global_step"] == 32 and len(r["batch_sizes"]) == 32
        assert r["batch_sizes"].count(0) > 0  # empty Poisson batches happened and still stepped
        assert r["sample_rate"] == 1 / 32 and r["expected_batch_size"] == 1.0  # global rate, per-rank share
        assert r["history"] == [(1.0, 1 / 32, 32)]
    assert r0["batch_sizes"] != r1["batch_sizes"]  # each rank draws its own shard with its own generator
    assert not torch.equal(r0["start"], r0["end"])
    assert torch.equal(r0["end"], r1["end"])
    expect = opacus_epsilon(1.0, 1 / 32, 32)
    assert r0["epsilon"] == pytest.approx(expect, rel=1e-6)
    assert trainer.callback_metrics["dp/epsilon"].item() == pytest.approx(expect, rel=1e-5)
    assert "dp/epsilon" in r0["metrics"] and "dp/epsilon" not in r1["metrics"]  # logged once, by rank 0


def test_dp_noise_is_added_once_over_all_ranks(tmp_path):
    """Zero gradients: one SGD step moves each weight by lr * N(0, (σ C)^2) / B_global if the noise is added once."""
    sigma, clip, lr, batch = 2.0, 0.5, 1.0, 8
    trainer = ddp_trainer(tmp_path, "noise", max_steps=1, callbacks=[DPSGDCallback(noise_multiplier=sigma, max_grad_norm=clip)])
    trainer.fit(ZeroGradientNet(lr=lr), TinyImages(batch_size=batch))
    r0, r1 = read_reports(tmp_path, "noise")
    assert r0["global_step"] == r1["global_step"] == 1
    assert torch.equal(r0["end"], r1["end"])
    step = r0["end"] - r0["start"]
    assert step.numel() > 49_000  # the sample variance is then within ~0.7% (1 sd) of the true one
    once = (lr * sigma * clip / batch) ** 2
    variance = step.pow(2).mean().item()
    assert variance == pytest.approx(once, rel=0.05)
    assert abs(variance / once - 2.0) > 0.5  # noise from each of the 2 (independent) ranks, summed, doubles it
    assert abs(step.mean().item()) < 5 * math.sqrt(once / step.numel())


@pytest.mark.parametrize(("setting", "key"), [
    ({"accumulate_grad_batches": 2}, "trainer.accumulate_grad_batches=2"),
    ({"gradient_clip_val": 1.0}, "trainer.gradient_clip_val=1.0"),
    ({"strategy_class": DDPStrategy}, "trainer.strategy=DDPStrategy runs 2 processes, but DP-SGD needs"),
])
def test_accumulation_clipping_and_plain_ddp_are_refused_under_dp_by_key(tmp_path, setting, key):
    trainer = ddp_trainer(tmp_path, "refused", max_epochs=1, **setting)
    with pytest.raises(Exception, match=key.replace(".", r"\.")):
        trainer.fit(SplitClassifier(width=4, dp=DPSGD(noise_multiplier=1.0)), TinyImages(batch_size=8))


def test_dp_callback_whose_module_leaves_trainable_parameters_outside_is_refused_on_several_processes(tmp_path):
    trainer = ddp_trainer(tmp_path, "outside", max_epochs=1, callbacks=[DPSGDCallback(noise_multiplier=1.0, module="net")])
    with pytest.raises(Exception, match=r"must hold every trainable parameter.*outside it: head\.weight, head\.bias"):
        trainer.fit(ZeroGradientNet(head=True), TinyImages(batch_size=8))


def test_dp_resume_continues_steps_and_accounting_without_repeating(tmp_path):
    dp = DPSGD(noise_multiplier=1.0)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    ddp_trainer(tmp_path, "first", max_epochs=1, enable_checkpointing=True, callbacks=[ckpt]).fit(
        SplitClassifier(width=4, dp=dp), TinyImages(batch_size=8))
    again = ddp_trainer(tmp_path, "resumed", max_epochs=2)
    again.fit(SplitClassifier(width=4, dp=dp), TinyImages(batch_size=8), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    first, resumed = read_reports(tmp_path, "first"), read_reports(tmp_path, "resumed")
    for r in resumed:
        assert r["global_step"] == 16 and len(r["batch_sizes"]) == 8  # 8 steps an epoch, epoch 2 only
        assert r["history"] == [(1.0, 1 / 8, 16)]  # the first epoch's 8 steps, once
    assert torch.equal(resumed[0]["start"], first[0]["end"])  # continues from the checkpoint's weights
    assert torch.equal(resumed[0]["end"], resumed[1]["end"])
    assert resumed[0]["batch_sizes"] != first[0]["batch_sizes"]  # epoch 2 draws new batches, not epoch 1's again
    assert resumed[0]["epsilon"] == pytest.approx(opacus_epsilon(1.0, 1 / 8, 16), rel=1e-6)


def test_dp_gan_ranks_agree_and_step_together_through_empty_batches(tmp_path):
    """Manual optimisation, only D private: D through Opacus's distributed optimizer, G averaged over the global batch."""
    trainer = ddp_trainer(tmp_path, "gan", max_epochs=1)
    gan = GAN(image_size=32, latent_dim=8, g_width=4, d_width=4, dp=DPSGD(noise_multiplier=1.0))
    trainer.fit(gan, TinyImages(n=32, batch_size=2, size=32))
    r0, r1 = read_reports(tmp_path, "gan")
    for r in (r0, r1):
        assert r["optimizer"] == "DistributedDPOptimizer"
        assert len(r["batch_sizes"]) == 16 and r["batch_sizes"].count(0) > 0
        assert r["history"] == [(1.0, 1 / 16, 16)]  # every D step counted, empty ones too
    assert not torch.equal(r0["start"], r0["end"])
    assert torch.equal(r0["end"], r1["end"])  # G, its EMA and D alike
    assert all(torch.equal(a, b) for a, b in zip(r0["buffers"], r1["buffers"]))  # G's BatchNorm statistics too
    assert r0["epsilon"] == pytest.approx(opacus_epsilon(1.0, 1 / 16, 16), rel=1e-6)


class SeedPerRank(L.Callback):
    """Each rank's latent draws differ (as in the wild), so only privgan's gradient sync can keep the ranks equal."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.manual_seed(2000 + trainer.global_rank)


def test_without_dp_a_gan_on_two_ranks_averages_both_networks_and_ends_equal(tmp_path):
    """Two backward passes a step share D, which torch's DDP reducer refuses: the GAN syncs itself under dp_ddp."""
    trainer = ddp_trainer(tmp_path, "gan_plain", max_epochs=1, callbacks=[SeedPerRank()])
    trainer.fit(GAN(image_size=32, latent_dim=8, g_width=4, d_width=4, r1_gamma=1.0), TinyImages(n=32, batch_size=4, size=32))
    r0, r1 = read_reports(tmp_path, "gan_plain")
    assert r0["batch_sizes"] == r1["batch_sizes"] == [4] * 4  # Lightning's sampler: 32 images / 2 ranks / batch 4
    assert not torch.equal(r0["start"], r0["end"])
    assert torch.equal(r0["start"], r1["start"])  # rank 0's initial weights broadcast
    assert torch.equal(r0["end"], r1["end"])  # G, its EMA and D (spectral norm, R1) alike
    assert all(torch.equal(a, b) for a, b in zip(r0["buffers"], r1["buffers"]))


def test_plain_ddp_is_refused_for_a_gan_with_the_strategy_to_use(tmp_path):
    trainer = ddp_trainer(tmp_path, "gan_ddp", max_epochs=1, strategy_class=DDPStrategy)
    with pytest.raises(Exception, match=r"trainer\.strategy: the GAN syncs its own gradients.*use privgan's dp_ddp"):
        trainer.fit(GAN(image_size=32, latent_dim=8, g_width=4, d_width=4), TinyImages(n=32, batch_size=4, size=32))
