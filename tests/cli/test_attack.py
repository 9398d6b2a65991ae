"""`privgan attack`: a registered attack on a saved model reproduces its callback's numbers and files, and says clearly what is wrong."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from privgan.attacks.registry import available_attacks, get_attack
from privgan.cli import main as cli_main
from privgan.cli.attack import default_out, privacy_from_checkpoint
from privgan.reporting.html_report import build_report
from privgan.reporting.points import load_curve
from tests.cli.test_cli import RECIPE, tiny_recipe
from tests.lfw_helpers import one_thread

MEMBERS = ["Colin_Powell", "Donald_Rumsfeld", "Gerhard_Schroeder", "Tony_Blair"]


def attack(*args: str) -> int:
    """``privgan attack ARGS`` in this process."""
    return cli_main(["attack", *args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_face_tree) -> dict[str, Path]:
    """The tiny split recipe trained 2 epochs with its attack callbacks and a last.ckpt."""
    tmp = tmp_path_factory.mktemp("attack")
    tiny, run = tiny_recipe(tmp, small_face_tree, epochs=2), tmp / "run"
    r = subprocess.run([sys.executable, "-m", "privgan.cli", "fit", "--config", str(RECIPE), "--config", str(tiny),
                        f"--trainer.default_root_dir={run}", "--trainer.logger=false"], cwd=tmp, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return {"tmp": tmp, "tiny": tiny, "run": run, "ckpt": tmp / "ckpt" / "last.ckpt"}


@pytest.mark.lfw
def test_membership_post_hoc_reproduces_the_callbacks_last_point(trained, capsys):
    out = trained["tmp"] / "post"
    assert attack("membership", "--checkpoint", str(trained["ckpt"]), "--config", str(RECIPE), "--config", str(trained["tiny"]),
                  "--out", str(out)) == 0
    printed = capsys.readouterr().out
    during = load_curve(trained["run"])[-1]
    after = load_curve(out / "attack_curve.json")[-1]
    assert (after.step, after.epoch, after.epsilon, after.delta) == (during.step, during.epoch, math.inf, None)
    cb, post = during.results["membership"], after.results["membership"]
    head, again = cb.signals[cb.headline], post.signals[post.headline]
    diff = again.value - head.value
    print(f"membership {cb.headline}: callback {head.value:.6f} {head.ci}, privgan attack {again.value:.6f}; difference {diff:+.2e}")
    assert post.headline == cb.headline and head.ci[0] <= again.value <= head.ci[1], (head, again)
    assert abs(diff) < 1e-9 and post.signals == cb.signals and post.verdict == cb.verdict  # same seed, same numbers
    written = [sorted(p.name for p in (d / "membership").glob("epoch_001*")) for d in (out, trained["run"])]
    assert written[0] == written[1] and "epoch_001.json" in written[0]
    assert post.verdict.upper() in printed and "chance 0.5" in printed and str(out / "attack_curve.json") in printed
    page = build_report(out, out / "report.html").read_text()  # a folder with only the post-hoc curve is a run to report
    assert "post-hoc attacks" in page and "membership verdict" in page


@pytest.fixture(scope="module")
def refs(tmp_path_factory, small_face_tree) -> Path:
    """A references folder: members/ and heldout/ photos of the 4 training identities, nonmembers/ of 2 others."""
    root = tmp_path_factory.mktemp("refs")
    layout = {"members": (MEMBERS, slice(0, 2)), "heldout": (MEMBERS, slice(4, 6)), "nonmembers": (["Hugo_Chavez", "Ariel_Sharon"], slice(0, 2))}
    for part, (names, sl) in layout.items():
        for n in names:
            (root / part / n).mkdir(parents=True)
            for f in sorted((small_face_tree / n).glob("*_0*.jpg"))[sl]:
                shutil.copy(f, root / part / n / f.name)
    return root


@pytest.mark.lfw
def test_membership_with_a_references_folder_and_no_recipe(trained, refs):
    out = trained["tmp"] / "refs_out"
    assert attack("membership", "--checkpoint", str(trained["ckpt"]), "--references", str(refs), "--out", str(out),
                  "--set", "shadow_models=0", "--set", "n_boot=20", "--name", "membership_refs") == 0
    result = json.loads((out / "membership_refs" / "epoch_001.json").read_text())
    assert result["attack"] == "membership" and 0 <= result["signals"]["auc"]["value"] <= 1
    assert list(load_curve(out / "attack_curve.json")[-1].results) == ["membership_refs"]


@pytest.mark.lfw
def test_gan_attack_on_generator_files_and_on_a_non_gan_checkpoint(trained, refs, tmp_path):
    from privgan.models.gan import ExportedGenerator
    from privgan.modules import GAN

    gan = GAN(image_size=32, latent_dim=16, g_width=8, d_width=8)
    scripted = gan.export_generator(tmp_path / "g.pt")
    exported = tmp_path / "g.pt2"
    torch.export.save(torch.export.export(ExportedGenerator(gan.generator_ema.eval()), (torch.randn(4, 16),)), str(exported))
    pixel_only = ["--references", str(refs), "--set", "logan=false", "--set", "ganleaks_embed=false", "--set", "n_samples=8",
                  "--set", "n_boot=20"]
    for f in (scripted, exported):
        assert attack("gan_membership", "--checkpoint", str(f), "--out", str(tmp_path / f.suffix[1:]), *pixel_only) == 0
        r = load_curve(tmp_path / f.suffix[1:] / "attack_curve.json")[0].results["gan_membership"]
        assert r.headline in r.signals and (tmp_path / f.suffix[1:] / "gan_membership" / "epoch_000.json").exists()
    with pytest.raises(SystemExit, match=r"needs a gan model; --checkpoint '.*last.ckpt' holds a SplitClassifier"):
        attack("identity_match", "--checkpoint", str(trained["ckpt"]), "--references", str(refs))
    with pytest.raises(SystemExit, match="is a generator file; the membership attack needs a classifier model"):
        attack("membership", "--checkpoint", str(scripted), "--references", str(refs))


@pytest.mark.lfw
def test_a_recipe_without_data_and_no_references_is_named(trained, tmp_path):
    nodata = tmp_path / "nodata.yaml"
    nodata.write_text("model:\n  class_path: privgan.modules.SplitClassifier\n  init_args: {num_classes: 4, width: 8}\n")
    with pytest.raises(SystemExit, match=r"no data to attack with: the recipe .*nodata.yaml has no data section and no --references"):
        attack("membership", "--checkpoint", str(trained["ckpt"]), "--config", str(nodata))
    with pytest.raises(SystemExit, match=r"--set: membership: unknown config keys \['n_targets'\]"):
        attack("membership", "--checkpoint", str(trained["ckpt"]), "--config", str(RECIPE), "--config", str(trained["tiny"]),
               "--set", "n_targets=3")


@pytest.fixture(scope="module")
def cropped_refs(tmp_path_factory, unlike_lfw_tree) -> Path:
    """members/ and heldout/ of the 4 training identities (4 + 4 photos each) as tight grayscale crops (PGM and JPEG)."""
    root = tmp_path_factory.mktemp("cropped_refs")
    for n in MEMBERS:
        files = sorted((unlike_lfw_tree / n).iterdir())
        for part, chosen in (("members", files[:4]), ("heldout", files[4:8])):
            (root / part / n).mkdir(parents=True)
            for f in chosen:
                shutil.copy(f, root / part / n / f.name)
    return root


def scored(out: Path) -> list[int]:
    """The member flag of every photo the membership attack scored (its scores.csv)."""
    lines = (out / "membership" / "epoch_001_scores.csv").read_text().splitlines()
    col = lines[0].split(",").index("member")
    return [int(line.split(",")[col]) for line in lines[1:]]


@pytest.mark.lfw
def test_align_and_max_dropped_reach_the_references_folder(trained, cropped_refs, tmp_path):
    common = ["membership", "--checkpoint", str(trained["ckpt"]), "--references", str(cropped_refs),
              "--set", "shadow_models=0", "--set", "n_boot=20"]
    with one_thread():
        assert attack(*common, "--align", "none", "--out", str(tmp_path / "none")) == 0
        assert sorted(scored(tmp_path / "none")) == [0] * 16 + [1] * 16  # every crop kept: 16 members, 16 held out
        # MTCNN alone loses most of these crops: refused, naming the part and the options that change it
        with pytest.warns(UserWarning, match="dropped"), pytest.raises(SystemExit) as err:
            attack(*common, "--align", "mtcnn", "--out", str(tmp_path / "mtcnn"))
        msg = str(err.value)
        assert "DroppedPhotosError" in msg and str(cropped_refs) in msg and "align='mtcnn'" in msg and "max_dropped=0.5" in msg
        assert "--align auto|none" in msg and "--max-dropped 1.0" in msg
        assert not (tmp_path / "mtcnn" / "membership").exists()
        # told to attack anyway: what MTCNN kept, balanced
        with pytest.warns(UserWarning, match="dropped"):
            assert attack(*common, "--align", "mtcnn", "--max-dropped", "1.0", "--out", str(tmp_path / "kept")) == 0
    kept = scored(tmp_path / "kept")
    assert 0 < len(kept) < 32 and kept.count(0) == kept.count(1)


@pytest.mark.lfw
def test_folder_options_without_a_references_folder_are_refused(trained):
    with pytest.raises(SystemExit, match=r"--align, --max-dropped: these set how a references folder is read, but this attack reads the recipe's FaceIdentityDataModule; give --references DIR"):
        attack("membership", "--checkpoint", str(trained["ckpt"]), "--config", str(RECIPE), "--config", str(trained["tiny"]),
               "--align", "none", "--max-dropped", "1")


def test_folder_options_replace_only_what_they_name_in_a_recipes_reference_folder(tmp_path):
    from privgan.cli.attack import reference_folder
    from privgan.data import ReferenceFolder

    (tmp_path / "heldout" / "Alice").mkdir(parents=True)
    recipe = ReferenceFolder(tmp_path, image_size=24, align="mtcnn", classes=["Alice", "Bob"], max_dropped=0.2)
    got = reference_folder(recipe, 32, {"align": "none"})
    assert (got.align, got.image_size, got.classes, got.max_dropped, got.root) == ("none", 24, ["Alice", "Bob"], 0.2, tmp_path)
    plain = reference_folder(str(tmp_path), None, {"max_dropped": 1.0})
    assert (plain.align, plain.image_size, plain.max_dropped) == ("auto", 64, 1.0)


@pytest.mark.parametrize("args, message", [
    (["--align", "dlib"], "argument --align: invalid choice: 'dlib' (choose from"),
    (["--max-dropped", "1.5"], "argument --max-dropped: must be a number in [0, 1], got '1.5'"),
    (["--max-dropped", "half"], "argument --max-dropped: must be a number in [0, 1], got 'half'"),
    (["--min-face-prob", "-0.1"], "argument --min-face-prob: must be a number in [0, 1], got '-0.1'"),
])
def test_bad_folder_options_are_argparse_errors_naming_the_option(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        attack("membership", "--checkpoint", str(tmp_path / "x.ckpt"), "--references", str(tmp_path), *args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err
    if "--align" in args:
        assert all(m in err for m in ("auto", "mtcnn", "none"))


def test_help_lists_every_registered_attack_with_its_summary_and_fields(capsys):
    with pytest.raises(SystemExit) as e:
        attack("--help")
    text = capsys.readouterr().out
    assert e.value.code == 0 and "--checkpoint" in text and "--references" in text
    assert "--align {auto,mtcnn,none}" in text and "--max-dropped SHARE" in text and "--min-face-prob P" in text
    for name in available_attacks():
        assert f"  {name} (" in text and get_attack(name).summary[:40] in text
    assert "pair_far=0.001" in text and "shadow_models=2" in text
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    assert "attack NAME --checkpoint" in capsys.readouterr().out


def test_unknown_attack_and_missing_checkpoint_are_named(tmp_path):
    with pytest.raises(SystemExit, match="unknown attack 'nosuch'; registered: .*membership"):
        attack("nosuch", "--checkpoint", str(tmp_path / "x.ckpt"))
    with pytest.raises(SystemExit, match=r"--checkpoint '.*missing.ckpt': no such file"):
        attack("membership", "--checkpoint", str(tmp_path / "missing.ckpt"))


def test_epsilon_and_delta_come_from_the_checkpoints_accountant():
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism="rdp")
    acc.history = [(1.1, 0.05, 200)]
    ckpt = {"hyper_parameters": {"dp": {"delta": 1e-6, "accountant": "rdp", "noise_multiplier": 1.1}},
            "privgan_dp_accountant": acc.state_dict()}
    eps, delta = privacy_from_checkpoint(ckpt)
    assert delta == 1e-6 and eps == pytest.approx(acc.get_epsilon(delta=1e-6)) and 0 < eps < 100
    assert privacy_from_checkpoint({"hyper_parameters": {"dp": None}}) == (math.inf, None)


def test_files_go_to_the_checkpoints_run_folder_by_default(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "privgan" / "abc" / "checkpoints").mkdir(parents=True)
    (run / "curve.json").write_text("{}")
    assert default_out(run / "privgan" / "abc" / "checkpoints" / "last.ckpt") == run.resolve()  # W&B logger's nesting
    (tmp_path / "other" / "checkpoints").mkdir(parents=True)
    assert default_out(tmp_path / "other" / "checkpoints" / "last.ckpt") == (tmp_path / "other").resolve()
    monkeypatch.chdir(tmp_path)
    assert default_out(tmp_path / "loose.ckpt") == tmp_path
