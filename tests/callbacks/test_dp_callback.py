"""DPSGDCallback: DP-SGD on anyone's LightningModule; the worked example in docs/defences.md runs as written."""

import contextlib
import io
import re
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from opacus.accountants import PRVAccountant
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from privgan.callbacks import DPSGDCallback, PrivacyUtilityCurve
from privgan.defences.dp import DPSGD, DPConfigError
from privgan.modules import SplitClassifier

ROOT = Path(__file__).resolve().parents[2]


def dp_example() -> str:
    m = re.search(r"<!-- dp-example -->\s*```python\n(.*?)```", (ROOT / "docs" / "defences.md").read_text(), re.S)
    assert m, "docs/defences.md lost its DPSGDCallback example"
    return m.group(1)


def test_the_documented_example_runs_and_its_epsilon_is_opacus_s(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(dp_example(), "docs/defences.md", "exec"), {"__name__": "__main__"})
    text = out.getvalue()
    ours, opacus = map(float, re.search(r"epsilon ([\d.]+) \(Opacus ([\d.]+)\)", text).groups())
    assert ours == pytest.approx(opacus, rel=1e-3) and 0 < ours < 100, text
    assert float(re.search(r"logged dp/epsilon ([\d.]+)", text).group(1)) == pytest.approx(opacus, rel=1e-3)
    # the attack ran alongside, and its curve point carries the ε of that step
    assert re.search(r"curve point at epoch 1: epsilon ([\d.]+), membership AUC [\d.]+ \((leak|no leak found)\)", text), text
    assert (tmp_path / "dp_run" / "curve.json").exists() and (tmp_path / "dp_run" / "membership" / "epoch_001.json").exists()


class Plain(L.LightningModule):
    def __init__(self, norm: str = "group"):
        super().__init__()
        layer = nn.GroupNorm(2, 4) if norm == "group" else nn.BatchNorm2d(4)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), layer, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.05)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1)}


class PlainData(L.LightningDataModule):
    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        return DataLoader(TensorDataset(torch.rand(40, 3, 8, 8, generator=g), torch.arange(40) % 3), batch_size=8, shuffle=True)


class HooksDuringAttack(L.Callback):
    """Stands in for an attack callback: it enters pl_module.attack_context() as AttackCallback.run_now does."""

    def __init__(self, dp):
        self.dp, self.seen = dp, []

    def on_train_epoch_end(self, trainer, pl_module):
        gsm = self.dp.dp.grad_sample_module
        with pl_module.attack_context():
            self.seen.append(gsm.hooks_enabled)
        self.seen.append(gsm.hooks_enabled)


def _trainer(tmp_path, callbacks, epochs, **kw):
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=tmp_path, callbacks=callbacks, **kw)


def test_hooks_pause_for_attacks_and_the_accountant_resumes_from_the_checkpoint(tmp_path):
    dp = DPSGDCallback(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
    spy = HooksDuringAttack(dp)
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True, save_on_train_epoch_end=True)
    model = Plain()
    own = Plain.configure_optimizers
    tr = _trainer(tmp_path, [dp, spy, ckpt, PrivacyUtilityCurve(plot=False)], 1)
    tr.fit(model, datamodule=PlainData())
    assert spy.seen == [False, True]  # off inside the attack context, on again for training
    assert tr.callback_metrics["dp/delta"].item() == pytest.approx(1e-5)
    # the module is plain again: its own configure_optimizers and no Opacus hooks
    assert "configure_optimizers" not in vars(model) and "attack_context" not in vars(model)
    assert type(model).configure_optimizers is own and not hasattr(model, "autograd_grad_sample_hooks")
    # a fresh callback restored from the checkpoint continues the ε history (5 steps an epoch at q = 8/40)
    dp2 = DPSGDCallback(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
    tr2 = _trainer(tmp_path, [dp2, L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)], 2)
    tr2.fit(Plain(), datamodule=PlainData(), ckpt_path=tmp_path / "ck" / "last.ckpt")
    acc = PRVAccountant()
    acc.history = [(1.0, 8 / 40, 2 * 5)]
    assert dp2.epsilon() == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-3)
    assert dp2.privacy_spent() == (dp2.epsilon(), 1e-5)


def test_modules_opacus_cannot_train_and_double_dp_are_refused_by_name(tmp_path):
    with pytest.raises(DPConfigError, match="BatchNorm"):
        _trainer(tmp_path, [DPSGDCallback(noise_multiplier=1.0)], 1).fit(Plain(norm="batch"), datamodule=PlainData())
    with pytest.raises(DPConfigError, match="either that or DPSGDCallback"):
        _trainer(tmp_path, [DPSGDCallback(noise_multiplier=1.0)], 1).fit(
            SplitClassifier(num_classes=3, width=4, dp=DPSGD(noise_multiplier=1.0)), datamodule=PlainData())
    with pytest.raises(DPConfigError, match="exactly one"):
        DPSGDCallback()
    with pytest.raises(DPConfigError, match="no such sub-module"):
        _trainer(tmp_path, [DPSGDCallback(noise_multiplier=1.0, module="encoder")], 1).fit(Plain(), datamodule=PlainData())
