"""Pre-release check: a generator that replays training faces is blocked (exit 1); one that draws noise passes (exit 0);
training identities it cannot protect fail it (exit 2); a self-test whose false blocks exceed the promise fails it (exit 3).

Test data are LFW photos, some made to look unlike LFW (``privgan.data.planted.unlike_lfw``) and written to temp folders.
"""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from privgan.cli import main as cli_main
from privgan.data.planted import DOMAIN_SHIFTS, EDIT_FAMILY, edited_copies, outsider_faces, outsider_identities, unlike_lfw
from privgan.defences.release_filter import CalibrationError, ReleaseFilter, within_interval
from privgan.faces import build_embedder, load_aligned
from privgan.modules.gan import GAN
from tests.lfw_helpers import one_thread, session_cache_dir

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


@pytest.fixture(scope="module")
def members(train_folder, tmp_path_factory):
    """The members' aligned faces at 32 px (the planted bad files skipped) and their labels."""
    files = [f for n in MEMBERS for f in sorted((train_folder / n).iterdir())]
    faces = load_aligned(files, size=32, align="mtcnn", cache_dir=session_cache_dir(tmp_path_factory))
    return faces, torch.tensor([MEMBERS.index(p.parent.name) for p in faces.paths]), len(files)


@pytest.fixture(scope="module")
def outsiders(lfw_dir, tmp_path_factory):
    """LFW faces of people outside MEMBERS at 32 px: 40 to calibrate on, 40 further ones held out (with their names)."""
    from privgan.cli.release_check import outsider_files

    cache = session_cache_dir(tmp_path_factory)  # the cache the command's runs in these tests use too
    cal_files, hold_files = outsider_files(lfw_dir, set(MEMBERS), n_calibration=40, n_holdout=40, seed=0)
    cal, hold = (load_aligned(f, size=32, align="mtcnn", cache_dir=cache) for f in (cal_files, hold_files))
    return (cal.images[:40], [p.parent.name for p in cal.paths][:40]), (hold.images[:40], [p.parent.name for p in hold.paths][:40])


def shifted(x: torch.Tensor) -> torch.Tensor:
    """Faces made unlike LFW: tight crop, grayscale, harsh one-sided light."""
    return unlike_lfw(x, DOMAIN_SHIFTS, generator=torch.Generator().manual_seed(0))


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


def noise_generator(path):
    GAN(image_size=32, latent_dim=16, g_width=8, d_width=8).export_generator(path)  # untrained: colour noise, nobody's face
    return path


def write_faces(root, names, faces, labels):
    """Aligned face crops as PNG files root/<identity>/<k>.png (a folder of pre-cropped faces)."""
    for k, (x, y) in enumerate(zip(faces, labels.tolist())):
        (root / names[y]).mkdir(parents=True, exist_ok=True)
        Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(root / names[y] / f"{k:03d}.png")
    return root


# -- the filter as a library ---------------------------------------------------------------------------
def test_filter_blocks_edited_training_photos_and_few_outsiders(members, outsiders, train_folder):
    faces, labels, n_files = members
    x = faces.images
    assert faces.n_skipped and len(x) == n_files - faces.n_skipped  # the planted bad files are counted
    (cal, cal_names), (hold, _) = outsiders
    filt = ReleaseFilter.calibrate(build_embedder("sface"), x, labels, MEMBERS, cal[:30], block_rate=0.1,
                                   outsider_labels=cal_names[:30])
    c = filt.calibration
    assert c.n_domain == len(x) and c.n_outsiders == 30 and c.threshold == max(c.thresholds.values())
    assert filt.check(cal[:30]).blocked.float().mean() <= 0.1  # calibrated: at most the block rate of the calibration outsiders
    copies = filt.check(edited_copies(x, generator=torch.Generator().manual_seed(0)))
    assert copies.blocked.float().mean() >= 0.9, copies.rate()
    assert (copies.identity[copies.blocked] == labels[copies.blocked]).float().mean() >= 0.9  # blocked as the right person
    held = filt.check(hold).rate()
    assert within_interval(held, 0.1), held  # further outsiders: blocked at about the block rate, not more
    assert c.summary()["heldout_training_domain"]["n"] == len(x)  # every training photo was once held out
    allowed, v = filt.filter(torch.cat([x[:3], hold[:3]]))
    assert len(allowed) == int((~v.blocked).sum())
    with pytest.raises(CalibrationError, match=rf"at least 1000 faces.*got {len(x) + 30}: {len(x)} training photos.*30 faces.*raise the block rate"):
        ReleaseFilter.calibrate(build_embedder("sface"), x, labels, MEMBERS, cal[:30], block_rate=1e-3)


def test_innocent_faces_of_a_transformed_domain_are_blocked_at_about_the_block_rate(members, outsiders):
    """Training photos unlike LFW, calibration outsiders from LFW: the innocent faces of the training photos' domain
    are blocked at about the block rate (leave-one-identity-out calibration), not at the 73 % that calibrating on
    the LFW outsiders alone gave."""
    faces, labels, _ = members
    (cal, cal_names), (hold, _) = outsiders
    # the recogniser's threshold on its own (the copy detector: tests/defences/test_copy_detector.py)
    filt = ReleaseFilter.calibrate(build_embedder("sface"), shifted(faces.images), labels, MEMBERS, cal, block_rate=0.05,
                                   outsider_labels=cal_names, gallery_views=("original", "flip"), copy_detection=False)
    innocents = filt.check(shifted(hold))  # 40 faces of 'new' people in the training photos' domain
    r = innocents.rate()
    assert r["blocked_rate"] <= 0.15 and within_interval(r, 0.05), r
    c = filt.calibration
    old_rule = float((innocents.similarity > c.thresholds["outsiders"]).float().mean())  # threshold from LFW outsiders alone
    assert old_rule >= 0.4, old_rule
    assert c.shift_warning and c.shift["p_value"] < 0.01, c.shift  # calibration faces and references differ
    assert within_interval(c.heldout_domain, 0.05), c.heldout_domain


# -- the command ----------------------------------------------------------------------------------------
COMMON = ["--n", "16", "--block-rate", "0.05", "--n-calibration", "40", "--align", "mtcnn", "--no-allowed-images"]
FAST = ["--gallery-views", "original,flip"]  # checks that are not about recall: a smaller gallery embeds faster


def test_release_check_cli_gates_on_blocked_samples(members, train_folder, lfw_dir, tmp_path, capsys):
    x = members[0].images
    leaky = tmp_path / "leaky.pt"
    torch.jit.script(ReplayGenerator(edited_copies(x, generator=torch.Generator().manual_seed(1)))).save(str(leaky))
    args = ["release-check", "--references", str(train_folder), "--calibration", str(lfw_dir), *COMMON, *FAST,
            "--plant-copies", "16", "--holdout-outsiders", "12"]
    assert cli_main([*args, "--checkpoint", str(leaky), "--out", str(tmp_path / "leaky")]) == 1
    out = capsys.readouterr().out
    s = json.loads((tmp_path / "leaky" / "summary.json").read_text())
    assert s["generated"]["blocked_rate"] >= 0.8 and s["planted_copies"]["blocked_rate"] >= 0.8
    n_train = len(x)
    assert s["calibration"]["n_faces"] == 40 + n_train and s["calibration"]["n_training_domain_faces"] == n_train
    assert s["n_identities"] == 4 and s["n_training_photos"] == n_train
    per_edit = s["planted_copies"]["per_edit"]
    assert set(per_edit) == set(EDIT_FAMILY) and all(r["n"] == 2 and len(r["recall_ci"]) == 2 for r in per_edit.values())
    assert "recall per edit" in out and all(f"    {e} " in out for e in EDIT_FAMILY)
    assert "within_interval: true" in out and "held-out training identities" in out and "exit code 1" in out
    assert s["exit_code"] == 1 and s["self_test"]["passed"] and s["unprotected_identities"] == {}
    shift = s["calibration"]["distribution_shift"]
    assert shift["p_value"] >= 0.01 and not shift["warning"] and f"p = {shift['p_value']:.4f}" in out  # LFW vs LFW
    assert (tmp_path / "leaky" / "blocked_gallery.png").exists()
    rows = (tmp_path / "leaky" / "verdicts.csv").read_text().splitlines()
    assert rows[0].startswith("sample,blocked,similarity,identity,training_photo,copy_similarity,copy_identity,"
                              "copy_training_photo,blocked_by,source") and len(rows) == 1 + 16 + 12 + 16
    g = s["generated"]  # both signals are reported, and every blocked sample was blocked by one of them
    assert g["by_identity"] + g["by_copy"] >= g["blocked"] and s["copy_threshold"] is not None and "near copies" in out
    assert s["calibration"]["copy_detector"]["views_per_photo"] > 100



def test_release_check_cli_passes_a_generator_of_nobody(train_folder, lfw_dir, tmp_path, capsys):
    args = ["release-check", "--references", str(train_folder), "--calibration", str(lfw_dir), *COMMON, *FAST,
            "--checkpoint", str(noise_generator(tmp_path / "noise.pt")), "--out", str(tmp_path / "noise")]
    assert cli_main(args) == 0
    s = json.loads((tmp_path / "noise" / "summary.json").read_text())
    assert s["generated"]["blocked"] == 0 and not (tmp_path / "noise" / "blocked_gallery.png").exists()
    assert "exit code 0: pass" in capsys.readouterr().out and s["calibration"]["gallery_views"] == ["original", "flip"]


def test_unprotected_identities_are_named_and_fail_the_check(train_folder, lfw_dir, tmp_path, capsys):
    """An identity whose photos are all unusable (here one image too small to hold a face) or that has no photo at all
    is listed by name with the reason, and the check exits 2 unless --allow-unprotected; tiny images are a counted skip."""
    refs = tmp_path / "refs"
    shutil.copytree(train_folder, refs)
    face = Image.open(sorted((lfw_dir / "Colin_Powell").iterdir())[0])
    face.resize((14, 14)).save(refs / "Colin_Powell" / "thumbnail.jpg")
    (refs / "Tiny_Person").mkdir()
    face.resize((12, 16)).save(refs / "Tiny_Person" / "tiny.png")
    (refs / "Empty_Person").mkdir()
    (refs / "Empty_Person" / "notes.txt").write_text("no photo here")
    gen = noise_generator(tmp_path / "noise.pt2")  # a torch.export generator (the TorchScript .pt is read too)
    args = ["release-check", "--references", str(refs), "--calibration", str(lfw_dir), *COMMON, *FAST, "--checkpoint", str(gen)]
    assert cli_main([*args, "--out", str(tmp_path / "a")]) == 2
    out = capsys.readouterr().out
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert set(s["unprotected_identities"]) == {"Tiny_Person", "Empty_Person"}
    assert "too small: 1" in s["unprotected_identities"]["Tiny_Person"] and s["unprotected_identities"]["Empty_Person"] == "no image files"
    assert "2 training identities cannot be protected" in out and "Tiny_Person: none of its 1 photos usable" in out
    assert "Empty_Person: no image files" in out and "exit code 2" in out
    assert s["references_skipped"]["too small"] == 2  # counted, and each named on screen
    assert "thumbnail.jpg" in out and "tiny.png" in out
    assert cli_main([*args, "--out", str(tmp_path / "b"), "--allow-unprotected"]) == 0
    out = capsys.readouterr().out
    assert "[allowed by --allow-unprotected]" in out and "Tiny_Person" in out and "exit code 0" in out


def test_a_self_test_whose_false_blocks_exceed_the_block_rate_fails_with_exit_3(train_folder, lfw_dir, tmp_path, capsys):
    """One person under two names: held out of the gallery, his photos still match his other name, so the held-out
    false-block rate is far above the block rate: `within_interval: false`, and the self-test fails (exit 3)."""
    refs = tmp_path / "refs"
    shutil.copytree(train_folder, refs)
    shutil.copytree(train_folder / "Colin_Powell", refs / "Powell_Colin_L")
    args = ["release-check", "--references", str(refs), "--calibration", str(lfw_dir), *COMMON, *FAST,
            "--checkpoint", str(noise_generator(tmp_path / "noise.pt")), "--out", str(tmp_path / "out")]
    assert cli_main(args) == 3
    out = capsys.readouterr().out
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    held = s["calibration"]["heldout_training_domain"]
    assert held["within_interval"] is False and held["ci_low"] > 0.05 and held["n_folds"] == 5
    assert "within_interval: false" in out and "self-test FAILED" in out and "exit code 3: self-test failed" in out
    assert not s["self_test"]["passed"] and s["exit_code"] == 3


def test_references_unlike_the_calibration_faces_raise_the_shift_warning_and_still_hold(members, lfw_dir, tmp_path, capsys):
    """Pre-cropped training faces made unlike LFW, LFW as calibration: the two-sample test warns, with its p-value,
    and the held-out false-block rate on the training photos' own domain stays within its interval."""
    faces, labels, _ = members
    refs = write_faces(tmp_path / "refs", MEMBERS, shifted(faces.images), labels)
    args = ["release-check", "--references", str(refs), "--calibration", str(lfw_dir), *COMMON, *FAST, "--align", "auto",
            "--checkpoint", str(noise_generator(tmp_path / "noise.pt")), "--out", str(tmp_path / "out")]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    shift = s["calibration"]["distribution_shift"]
    assert shift["warning"] and shift["p_value"] < 0.01
    assert f"p = {shift['p_value']:.4f}" in out and "WARNING: the calibration faces and the references differ" in out
    assert s["calibration"]["heldout_training_domain"]["within_interval"] and "within_interval: true" in out


def test_outsiders_are_the_same_people_for_one_seed_in_release_check_and_planted_faces(lfw_dir):
    from privgan.cli.release_check import outsider_files

    cal, hold = outsider_files(lfw_dir, set(MEMBERS), n_calibration=12, n_holdout=6, seed=3)
    drawn = list(dict.fromkeys(f.parent.name for f in cal + hold))
    order = list(outsider_identities(lfw_dir, set(MEMBERS), seed=3))
    assert drawn == order[: len(drawn)]  # every photo of each person, people in the seeded order
    cal_people = list(dict.fromkeys(f.parent.name for f in cal))
    assert all(sorted((lfw_dir / n).iterdir()) == [f for f in cal if f.parent.name == n] for n in cal_people)  # every photo
    assert all(len([f for f in hold if f.parent.name == n]) <= 2 for n in drawn)  # held-out people: at most 2 photos each
    _, names = outsider_faces(lfw_dir, set(MEMBERS), n=10, size=32, per_identity=2, seed=3)
    used = list(dict.fromkeys(names))
    assert used[0] == order[0] and used == [n for n in order if n in used][: len(used)]  # same seeded order
    assert not set(drawn) & set(MEMBERS) and list(outsider_identities(lfw_dir, set(MEMBERS), count=3, seed=4)) != order[:3]


def test_release_check_errors_name_the_input_and_the_fix(members, train_folder, lfw_dir, tmp_path, capsys):
    """Bad input exits 4 with a message (no traceback): not 1 (blocked), 2 (unprotected) or 3 (self-test failed)."""
    assert cli_main(["release-check", "--checkpoint", str(tmp_path / "nope.pt"), "--references", str(tmp_path)]) == 4
    assert "nope.pt" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_text("not a model")
    assert cli_main(["release-check", "--checkpoint", str(tmp_path / "bad.pt"), "--references", str(tmp_path)]) == 4
    assert "bad.pt" in (err := capsys.readouterr().err) and "neither an exported generator" in err
    with pytest.raises(SystemExit) as e:
        cli_main(["release-check", "--checkpoint", "x", "--references", "y", "--block-rate", "2"])
    assert e.value.code == 4
    # too few faces for the block rate: the numbers and the fix, not a traceback
    gen = noise_generator(tmp_path / "noise.pt")
    args = ["release-check", "--references", str(train_folder), "--calibration", str(lfw_dir), "--n-calibration", "40",
            "--align", "mtcnn", "--block-rate", "1e-3", "--checkpoint", str(gen), "--out", str(tmp_path / "out")]
    assert cli_main(args) == 4
    err = capsys.readouterr().err
    n = len(members[0].images)
    assert "needs at least 1000 faces" in err and f"got {n + 40}: {n} training photos" in err and "40 faces of people outside" in err
    assert "Fix:" in err and "--n-calibration 40" in err and "Traceback" not in err
