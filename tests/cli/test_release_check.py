"""Pre-release check: a generator that replays training faces is blocked (exit 1); one that draws noise passes."""

import json
import shutil

import pytest
import torch
from torch import nn

from privgan.cli import main as cli_main
from privgan.data.planted import edited_copies, outsider_faces, outsider_identities
from privgan.defences.release_filter import ReleaseFilter
from privgan.faces import build_embedder, load_aligned
from privgan.modules.gan import GAN
from tests.lfw_helpers import one_thread

MEMBERS = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder")

pytestmark = pytest.mark.lfw


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def train_folder(small_face_tree, tmp_path_factory):
    """The four identities with several photos: the training identities of the checks below."""
    root = tmp_path_factory.mktemp("train_ids")
    for name in MEMBERS:
        shutil.copytree(small_face_tree / name, root / name)
    return root


class ReplayGenerator(nn.Module):
    """A scriptable 'generator' that returns stored photos picked by the latent code (a planted leak)."""

    def __init__(self, photos: torch.Tensor, latent_dim: int = 8):
        super().__init__()
        self.register_buffer("photos", photos)
        self.latent_dim = latent_dim
        self.image_size = photos.shape[-1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        idx = (z[:, 0].abs() * 1e4).long() % self.photos.shape[0]
        return self.photos[idx]


def test_filter_blocks_edited_training_photos_and_few_outsiders(train_folder, lfw_dir, tmp_path):
    from privgan.cli.release_check import outsider_files

    files = [f for n in MEMBERS for f in sorted((train_folder / n).iterdir())]
    faces = load_aligned(files, size=32)
    x, n_skipped = faces.images, faces.n_skipped
    assert n_skipped and len(x) == len(files) - n_skipped  # the planted bad files are counted
    labels = torch.tensor([MEMBERS.index(p.parent.name) for p in faces.paths])
    cal_files, hold_files = outsider_files(lfw_dir, set(MEMBERS), n_calibration=30, n_holdout=30, seed=0)
    cal, hold = load_aligned(cal_files, size=32).images[:30], load_aligned(hold_files, size=32).images[:30]
    filt = ReleaseFilter.calibrate(build_embedder("sface"), x, labels, MEMBERS, cal, block_rate=0.1)
    assert filt.check(cal).blocked.float().mean() <= 0.1  # calibrated: at most FAR of the calibration outsiders
    copies = filt.check(edited_copies(x, generator=torch.Generator().manual_seed(0)))
    assert copies.blocked.float().mean() >= 0.9, copies.rate()
    assert (copies.identity[copies.blocked] == labels[copies.blocked]).float().mean() >= 0.9  # blocked as the right person
    held = filt.check(hold).rate()
    assert held["ci_low"] <= 0.1, held  # further outsiders: blocked at about the FAR, not more
    allowed, v = filt.filter(torch.cat([x[:3], hold[:3]]))
    assert len(allowed) == int((~v.blocked).sum())
    with pytest.raises(ValueError, match="at least 1000 faces"):
        ReleaseFilter.calibrate(build_embedder("sface"), x, labels, MEMBERS, cal, block_rate=1e-3)


def test_outsiders_are_the_same_people_for_one_seed_in_release_check_and_planted_faces(lfw_dir):
    from privgan.cli.release_check import outsider_files

    cal, hold = outsider_files(lfw_dir, set(MEMBERS), n_calibration=12, n_holdout=6, seed=3)
    drawn = list(dict.fromkeys(f.parent.name for f in cal + hold))
    assert drawn[:3] == list(outsider_identities(lfw_dir, set(MEMBERS), count=3, seed=3))
    _, names = outsider_faces(lfw_dir, set(MEMBERS), n=10, size=32, per_identity=2, seed=3)
    used = list(dict.fromkeys(names))
    assert used[0] == drawn[0] and used == [n for n in drawn if n in used]  # same seeded order (no-face people skipped)
    assert not set(drawn) & set(MEMBERS) and list(outsider_identities(lfw_dir, set(MEMBERS), count=3, seed=4)) != drawn[:3]


def test_release_check_cli_gates_on_blocked_samples(train_folder, lfw_dir, tmp_path):
    files = [f for n in MEMBERS for f in sorted((train_folder / n).iterdir())]
    x = load_aligned(files, size=32).images
    leaky = tmp_path / "leaky.pt"
    torch.jit.script(ReplayGenerator(edited_copies(x, generator=torch.Generator().manual_seed(1)))).save(str(leaky))
    args = ["release-check", "--references", str(train_folder), "--n", "24", "--block-rate", "0.05", "--calibration", str(lfw_dir),
            "--n-calibration", "40", "--plant-copies", "12", "--holdout-outsiders", "20"]
    assert cli_main([*args, "--checkpoint", str(leaky), "--out", str(tmp_path / "leaky")]) == 1
    s = json.loads((tmp_path / "leaky" / "summary.json").read_text())
    assert s["generated"]["blocked_rate"] >= 0.8 and s["planted_copies"]["blocked_rate"] >= 0.8
    assert s["calibration"]["n_faces"] == 40 and s["n_identities"] == 4
    assert (tmp_path / "leaky" / "blocked_gallery.png").exists()
    assert len(list((tmp_path / "leaky" / "allowed").glob("*.png"))) == 24 - s["generated"]["blocked"]
    rows = (tmp_path / "leaky" / "verdicts.csv").read_text().splitlines()
    assert rows[0].startswith("sample,blocked,similarity,identity,training_photo,source") and len(rows) == 1 + 24 + 12 + 20

    gan = GAN(image_size=32, latent_dim=16, g_width=8, d_width=8)  # untrained: colour noise, nobody's face
    gan.export_generator(tmp_path / "noise.pt")
    assert cli_main([*args, "--checkpoint", str(tmp_path / "noise.pt"), "--out", str(tmp_path / "noise")]) == 0
    s = json.loads((tmp_path / "noise" / "summary.json").read_text())
    assert s["generated"]["blocked"] == 0 and len(list((tmp_path / "noise" / "allowed").glob("*.png"))) == 24
    assert not (tmp_path / "noise" / "blocked_gallery.png").exists()


def test_release_check_errors_name_the_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        cli_main(["release-check", "--checkpoint", str(tmp_path / "nope.pt"), "--references", str(tmp_path)])
    (tmp_path / "bad.pt").write_text("not a model")
    with pytest.raises(ValueError, match="bad.pt.*neither a TorchScript"):
        cli_main(["release-check", "--checkpoint", str(tmp_path / "bad.pt"), "--references", str(tmp_path)])
    with pytest.raises(SystemExit):
        cli_main(["release-check", "--checkpoint", "x", "--references", "y", "--block-rate", "2"])
