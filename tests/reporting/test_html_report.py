"""`privgan report`: the HTML page reads typed curve points: the run's own δ, chance levels from each Signal, verdicts from each Result."""

import numpy as np
import pytest
from PIL import Image

from privgan.attacks.result import Result, Signal
from privgan.cli import main as cli_main
from privgan.reporting.html_report import build_report, find_chromium, screenshot
from privgan.reporting.points import CurvePoint, save_curve

LEAK = (0xFB, 0xD5, 0xD5)
NO_LEAK = (0xD9, 0xF2, 0xD9)


def identity_result(auc: float, ci: tuple[float, float]) -> Result:
    """An identity-match Result whose AUC has chance 0.5."""
    return Result("identity_match", {"auc": Signal(auc, 0.5, ci)}, "auc", values={"fd_face": 1.0})


def _run(tmp_path, *, delta=1e-5):
    """A DP GAN run folder with two curve points: nothing at epoch 0, a clear identity leak at epoch 9."""
    run = tmp_path / "gan_run"
    (run / "identity_match").mkdir(parents=True)
    pts = [CurvePoint(step=s, epoch=e, utility_key="utility/fd_face", utility=u, utility_higher_is_better=False, epsilon=3.5,
                      delta=delta, results={"identity_match": identity_result(auc, ci)})
           for s, e, u, auc, ci in [(10, 0, 1.4, 0.52, (0.41, 0.63)), (100, 9, 0.7, 0.91, (0.84, 0.97))]]
    save_curve(run / "curve.json", pts)
    Image.new("RGB", (40, 20), (200, 150, 120)).save(run / "identity_match" / "epoch_009_gallery.png")
    return run


def test_report_marks_verdicts_and_keeps_faces_out(tmp_path):
    run = _run(tmp_path)
    page = build_report(run, tmp_path / "r.html").read_text()
    # one signal cell and one verdict cell per point, each in its verdict's colour
    assert page.count('<td class="leak"') == 1 and page.count('<td class="noleak"') == 1
    assert page.count('class="verdict leak"') == 1 and page.count('class="verdict noleak"') == 1
    assert "0.91" in page and "[0.84, 0.97]" in page and "leaking: auc" in page
    assert "ε = 3.5 at δ = 1e-05" in page and "lower is better" in page
    assert "identity_match gallery" not in page and "not embedded" in page  # real faces only on request
    assert page.count("data:image/png;base64,") == 1  # the curve, embedded: the page stands alone
    with_faces = build_report(run, tmp_path / "g.html", galleries=True).read_text()
    assert "identity_match gallery" in with_faces and with_faces.count("data:image/png;base64,") == 2
    assert cli_main(["report", str(tmp_path), "--out", str(tmp_path / "sweep.html")]) == 0  # a folder of runs
    with pytest.raises(FileNotFoundError, match="no curve.json"):
        build_report(tmp_path / "gan_run" / "identity_match", tmp_path / "x.html")


def test_report_shows_the_runs_own_delta_and_infinite_epsilon_when_not_private(tmp_path):
    page = build_report(_run(tmp_path, delta=1e-6), tmp_path / "r.html").read_text()
    assert "δ = 1e-06" in page and "δ = 1e-05" not in page  # the old page always said 1e-5
    plain = tmp_path / "plain"
    save_curve(plain / "curve.json", [CurvePoint(step=1, epoch=0, utility_key="utility/val_acc", utility=0.5,
                                                 results={"identity_match": identity_result(0.5, (0.4, 0.6))})])
    page = build_report(plain, tmp_path / "p.html").read_text()
    assert "not trained with DP-SGD (ε = ∞)" in page and "<td>∞</td>" in page and "δ =" not in page


def test_reid_rate_near_its_own_chance_is_not_a_leak(tmp_path):
    """Re-id chance is the Result's pair_far (0.05 here), not a fixed 1e-3: a rate of 0.06 [0.03, 0.10] leaks nothing."""
    run = tmp_path / "split_run"
    inversion = Result("inversion", {"reid_rate": Signal(0.06, 0.05, (0.03, 0.10)), "reid_top1": Signal(0.3, 0.25, (0.1, 0.5)),
                                     "psnr_db": Signal(12.0)}, "reid_top1", best="whitebox", values={"pair_far": 0.05},
                       notes=("threshold calibrated at pair_far=0.05",))
    save_curve(run / "curve.json", [CurvePoint(step=4, epoch=1, utility_key="utility/val_acc", utility=0.4, epsilon=2.0,
                                               delta=1e-6, results={"inversion": inversion})])
    page = build_report(run, tmp_path / "r.html").read_text()
    assert inversion.verdict == "no leak found"
    assert 'class="leak"' not in page and "verdict leak" not in page
    assert page.count('<td class="noleak"') == 2  # reid_rate and reid_top1, each against its own chance
    assert "chance 0.05" in page and "threshold calibrated at pair_far=0.05" in page
    assert "δ = 1e-06" in page


def test_inconclusive_result_is_grey_not_green(tmp_path):
    run = tmp_path / "r"
    r = Result("membership", {"auc": Signal(0.52, 0.5, (0.4, 0.64))}, "auc", converged=False, notes=("shadow models diverged",))
    save_curve(run / "curve.json", [CurvePoint(step=1, epoch=0, utility_key="utility/val_acc", utility=0.5, results={"membership": r})])
    page = build_report(run, tmp_path / "p.html").read_text()
    assert 'class="noleak"' not in page and page.count('<td class="unsure"') == 1 and 'verdict unsure' in page and "shadow models diverged" in page


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium on PATH (make test installs Debian's chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    run = _run(tmp_path)
    png = screenshot(build_report(run, tmp_path / "r.html"), tmp_path / "shot.png", width=1000, height=1200)
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape == (1200, 1000, 3) and img.std() > 10  # rendered, not a blank page
    colours = {tuple(c) for c in img.reshape(-1, 3)[:: 7].tolist()}
    assert LEAK in colours and NO_LEAK in colours  # the verdict cells are on screen, in their colours
