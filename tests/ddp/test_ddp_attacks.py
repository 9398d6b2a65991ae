"""Attack callbacks under DDP (2 processes, spawn, gloo): no deadlock, one curve written by rank 0, the planted leak
seen, the Result equal to the same attack on the same weights in one process, LiRA's reference models and the GAN
sample embeddings split across ranks, a lost rank named."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from privgan.attacks.registry import get_attack
from privgan.callbacks import IdentityMatchAttack, MembershipAttack, PrivacyUtilityCurve
from privgan.callbacks.base import _SHARED_BANKS
from privgan.callbacks.ddp_coordination import rank_block
from privgan.data.gan_faces import GanFaceDataModule
from privgan.faces.embedders import embed_batched, get_embedder
from privgan.modules.gan import GAN
from privgan.data.synthetic import SyntheticIdentityDataModule
from privgan.modules import SplitClassifier
from privgan.reporting.points import load_curve
from privgan.targets import view_from
from privgan.strategies import DPDDPStrategy
from tests.ddp.helpers import ddp_trainer, read_reports

pytestmark = [pytest.mark.ddp, pytest.mark.timeout(300)]


def callbacks():
    # random labels: only memorisation fits them, so membership leaks (a planted truth the attack must see)
    return [MembershipAttack(every_n_epochs=8, config={"shadow_models": 2, "n_boot": 200}), PrivacyUtilityCurve(plot=False)]


class ShadowShare(L.Callback):
    """Each rank writes which LiRA reference models it trained."""

    def __init__(self, out: Path, attack: MembershipAttack) -> None:
        self.out, self.attack = Path(out), attack

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.save(self.attack.shadow_models_here, self.out / f"shadow_rank{trainer.global_rank}.pt")


def data():
    return SyntheticIdentityDataModule(n_identities=4, per_identity=32, image_size=16, batch_size=16, random_labels=True)


def test_an_attack_under_ddp_sees_the_planted_leak_once_and_equals_the_attack_on_the_same_weights_in_one_process(tmp_path):
    # Two ranks train a different model than one process would (twice the global batch), so the exact
    # check is on the same weights: rank 0's attack under DDP must equal the attack re-run here, unsharded.
    cbs = callbacks()
    two = ddp_trainer(tmp_path, "attack", max_epochs=8, callbacks=[*cbs, ShadowShare(tmp_path, cbs[0])])
    two.fit(SplitClassifier(width=8, lr=5e-3, augment=False), data())
    points = load_curve(tmp_path)
    assert len(points) == 1  # one point, written once (by rank 0), at the last epoch
    under_ddp = points[-1].results["membership"]
    assert under_ddp.signals["loss_auc"].value > 0.6 and under_ddp.verdict == "leak"  # the planted leak is seen
    assert "lira_offline_auc" in under_ddp.signals
    # each rank trained one of the two LiRA reference models, and rank 0 attacked with both
    assert [torch.load(tmp_path / f"shadow_rank{r}.pt") for r in range(2)] == [[0], [1]]

    rank0 = read_reports(tmp_path, "attack")[0]
    module = SplitClassifier(width=8, lr=5e-3, augment=False, num_classes=4)
    torch.nn.utils.vector_to_parameters(rank0["end"], module.parameters())
    for buf, saved in zip(module.buffers(), rank0["buffers"]):
        buf.copy_(saved)
    cb = callbacks()[0]
    dm = data()
    dm.setup("fit")
    again = cb.attack_module(module, view_from(dm, needs=get_attack("membership").needs), 7, {})  # epoch 7: the last of 8
    # the whole data set, not one rank's shard; the reference models trained as one process trains them (8 epochs)
    assert set(again.signals) == set(under_ddp.signals)
    for k, s in under_ddp.signals.items():
        assert again.signals[k].value == pytest.approx(s.value, abs=1e-6), k


class BankReport(L.Callback):
    """After the GAN attack at an epoch end, each rank writes how many sample embeddings it computed, and its bank."""

    def __init__(self, out: Path, attack: IdentityMatchAttack) -> None:
        self.out, self.attack = Path(out), attack

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _, banks = _SHARED_BANKS.get(pl_module, (-1, {}))
        bank = next(iter(banks.values()), {})
        torch.save({"embedded_here": self.attack.embedded_here,
                    "samples": {k: v for k, v in bank.items() if k[0] == "samples"},
                    "embeddings": {k: v for k, v in bank.items() if k[0] == "embeddings"}},
                   self.out / f"bank_rank{trainer.global_rank}.pt")


def test_rank_blocks_cover_the_items_once_in_order():
    for n in (0, 1, 13, 64):
        for world in (1, 2, 3, 8):
            blocks = [rank_block(n, r, world) for r in range(world)]
            assert blocks[0][0] == 0 and blocks[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
            assert max(hi - lo for lo, hi in blocks) - min(hi - lo for lo, hi in blocks) <= 1


@pytest.mark.lfw
def test_a_gan_identity_attack_under_ddp_splits_the_sample_embeddings_and_rank_0_attacks_on_all_of_them(tmp_path, small_face_tree):
    ident = IdentityMatchAttack(config={"n_samples": 13, "k": 2, "n_boot": 20, "n_gallery": 3})
    dm = GanFaceDataModule(root=str(small_face_tree), n_member_identities=2, n_nonmember_identities=2, train_images=4,
                           reference_images=3, image_size=32, batch_size=4)
    tr = ddp_trainer(tmp_path, "gan", max_epochs=1, callbacks=[ident, BankReport(tmp_path, ident),
                                                                  PrivacyUtilityCurve(plot=False, utility_key="utility/fd_face")])
    tr.fit(GAN(image_size=32, latent_dim=16, g_width=8, d_width=8), dm)
    ranks = [torch.load(tmp_path / f"bank_rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["embedded_here"] for r in ranks] == [7, 6]  # 13 samples: 7 embedded on rank 0, 6 on rank 1
    (key, emb), = ranks[0]["embeddings"].items()
    samples = ranks[0]["samples"][("samples", 13, 0)]
    assert torch.equal(ranks[1]["samples"][("samples", 13, 0)], samples)  # the same weights draw the same samples
    alone = embed_batched(get_embedder("sface"), samples)  # what one process computes from them
    assert emb.shape == alone.shape == (13, alone.shape[1])
    assert torch.allclose(emb, alone, atol=1e-5)
    point = load_curve(tmp_path)[-1]  # rank 0 attacked with all 13 and wrote the one point
    assert point.results["identity_match"].values["n_samples"] == 13 and len(load_curve(tmp_path)) == 1


class LoseRankOne(L.Callback):
    """Rank 1 dies at the first epoch end, before the attack callbacks' collectives."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank == 1:
            os._exit(0)


def test_a_lost_rank_fails_the_attack_with_an_error_naming_it_instead_of_hanging(tmp_path):
    strategy = DPDDPStrategy(start_method="spawn", process_group_backend="gloo", timeout=datetime.timedelta(seconds=5))
    tr = L.Trainer(accelerator="cpu", devices=2, strategy=strategy, max_epochs=2, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                   callbacks=[LoseRankOne(), *callbacks()])
    t = time.monotonic()
    with pytest.raises(Exception, match="privgan membership: rank 0 of 2 lost its peers while gathering reference models at step 2"):
        tr.fit(SplitClassifier(width=8, lr=5e-3, augment=False), data())
    assert time.monotonic() - t < 120
