"""PrivacyUtilityCurve keeps a run's points safe: no silent restart over them, "finished" only at the end, one run per folder."""

import json
import os
import socket
import subprocess
import sys

import lightning as L
import pytest

from privgan.callbacks import MembershipAttack, PrivacyUtilityCurve
from privgan.data.synthetic import SyntheticIdentityDataModule
from privgan.modules import SplitClassifier
from privgan.reporting.local_files import RunFolderBusy
from privgan.reporting.points import CurvePoint, load_curve, save_curve


def _fit(run, callbacks, epochs=1, ckpt_path=None, checkpoint=False):
    cbs = list(callbacks)
    if checkpoint:
        cbs.append(L.pytorch.callbacks.ModelCheckpoint(dirpath=run / "checkpoints", save_last=True, save_on_train_epoch_end=True))
    tr = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=checkpoint, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=run, callbacks=cbs)
    tr.fit(SplitClassifier(width=4, split_at="stem"),
           SyntheticIdentityDataModule(n_identities=3, per_identity=8, aux_images=8, image_size=16, batch_size=6),
           ckpt_path=ckpt_path)
    return tr


def _attack():
    return MembershipAttack(config={"shadow_models": 0, "n_boot": 20})


def test_a_restart_over_earlier_points_refuses_unless_resumed_or_told(tmp_path):
    run = tmp_path / "run"
    _fit(run, [_attack(), PrivacyUtilityCurve(plot=False)], checkpoint=True)
    before = (run / "curve.json").read_text()
    with pytest.raises(FileExistsError) as e:
        _fit(run, [_attack(), PrivacyUtilityCurve(plot=False)], epochs=2)
    msg = str(e.value)
    assert str(run) in msg and "--ckpt_path=last" in msg and "--overwrite" in msg and "1 privacy-utility curve point" in msg
    assert (run / "curve.json").read_text() == before and not (run / ".privgan.lock").exists()
    # resuming keeps them and adds one
    _fit(run, [_attack(), PrivacyUtilityCurve(plot=False)], epochs=2, ckpt_path=run / "checkpoints" / "last.ckpt",
         checkpoint=True)
    assert [p.epoch for p in load_curve(run)] == [0, 1]
    # overwrite=True starts over on purpose
    _fit(run, [_attack(), PrivacyUtilityCurve(plot=False, overwrite=True)])
    assert [p.epoch for p in load_curve(run)] == [0]


def test_a_foreign_curve_file_is_protected_too(tmp_path):
    save_curve(tmp_path / "curve.json", [CurvePoint(step=3, epoch=0, utility_key="u", utility=0.5)])
    with pytest.raises(FileExistsError, match="curve.json"):
        _fit(tmp_path, [PrivacyUtilityCurve(plot=False)])


class _StopAt(L.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


def test_curve_json_says_finished_only_when_the_fit_reached_its_end(tmp_path):
    _fit(tmp_path / "done", [_attack(), PrivacyUtilityCurve(plot=False)], epochs=2)
    done = json.loads((tmp_path / "done" / "curve.json").read_text())
    assert done["finished"] is True and done["epochs"] == 2 and done["max_epochs"] == 2 and len(done["points"]) == 2
    with pytest.raises(SystemExit):  # Lightning turns Ctrl-C into a graceful shutdown and exit(1)
        _fit(tmp_path / "cut", [_StopAt(1), _attack(), PrivacyUtilityCurve(plot=False)], epochs=2)
    cut = json.loads((tmp_path / "cut" / "curve.json").read_text())
    assert cut["finished"] is False and [p["epoch"] for p in cut["points"]] == [0]
    assert not (tmp_path / "cut" / ".privgan.lock").exists()



def test_the_run_folder_is_locked_during_fit_and_a_live_holder_refused(tmp_path):
    class Sees(L.Callback):
        held = None

        def on_train_epoch_end(self, trainer, pl_module):
            Sees.held = json.loads((tmp_path / ".privgan.lock").read_text())

    _fit(tmp_path, [Sees(), PrivacyUtilityCurve(plot=False)])
    assert Sees.held["pid"] == os.getpid() and not (tmp_path / ".privgan.lock").exists()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".privgan.lock").write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(), "since": 0}))
        before = (tmp_path / "curve.json").read_text()
        with pytest.raises(RunFolderBusy, match=f"pid {other.pid}"):
            _fit(tmp_path, [_attack(), PrivacyUtilityCurve(plot=False, overwrite=True)])
        assert (tmp_path / "curve.json").read_text() == before and not (tmp_path / "membership").exists()
        # an attack callback alone (no curve) will not write into a folder another run holds either
        with pytest.raises(RunFolderBusy):
            _fit(tmp_path, [MembershipAttack(config={"shadow_models": 0, "n_boot": 20}, fail_on_error=True)])
        assert not (tmp_path / "membership").exists()
    finally:
        other.kill()
        other.wait()
