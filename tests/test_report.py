"""`privgan report`: the HTML page marks leaks and non-leaks, keeps faces out unless asked, and renders in Chromium."""

import json

import numpy as np
import pytest
from PIL import Image

from privgan.cli import main as cli_main
from privgan.plotting import plot_run_curve
from privgan.report import build_report, find_chromium, screenshot

LEAK = (0xFB, 0xD5, 0xD5)
NO_LEAK = (0xD9, 0xF2, 0xD9)


def _run(tmp_path):
    """A run folder with two curve points: a clear identity leak at epoch 9, nothing at epoch 0."""
    run = tmp_path / "gan_run"
    (run / "identity").mkdir(parents=True)
    base = {"utility_key": "utility/fd_face", "utility_higher_is_better": False, "epsilon": 3.5, "dp/delta": 1e-5}
    pts = [
        base | {"step": 10, "epoch": 0, "utility": 1.4, "privacy/identity_auc": 0.52, "privacy/identity_auc_ci_low": 0.41,
                "privacy/identity_auc_ci_high": 0.63},
        base | {"step": 100, "epoch": 9, "utility": 0.7, "privacy/identity_auc": 0.91, "privacy/identity_auc_ci_low": 0.84,
                "privacy/identity_auc_ci_high": 0.97},
    ]
    (run / "curve.json").write_text(json.dumps({"utility_key": "utility/fd_face", "points": pts}))
    plot_run_curve(pts, ["privacy/identity_auc"], run / "curve.png", title="gan_run")
    Image.new("RGB", (40, 20), (200, 150, 120)).save(run / "identity" / "epoch_009_gallery.png")
    return run


def test_report_marks_verdicts_and_keeps_faces_out(tmp_path):
    run = _run(tmp_path)
    page = build_report(run, tmp_path / "r.html").read_text()
    assert page.count('class="leak"') == 1 and page.count('class="noleak"') == 1
    assert 'title="leak"' in page and "0.91" in page and "[0.84, 0.97]" in page
    assert "ε = 3.5 at δ = 1e-05" in page and "lower is better" in page
    assert "identity gallery" not in page and "not embedded" in page  # real faces only on request
    assert page.count("data:image/png;base64,") == 1  # the curve, embedded: the page stands alone
    with_faces = build_report(run, tmp_path / "g.html", galleries=True).read_text()
    assert "identity gallery" in with_faces and with_faces.count("data:image/png;base64,") == 2
    assert cli_main(["report", str(tmp_path), "--out", str(tmp_path / "sweep.html")]) == 0  # a folder of runs
    with pytest.raises(FileNotFoundError, match="no curve.json"):
        build_report(tmp_path / "gan_run" / "identity", tmp_path / "x.html")


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium on PATH (make test installs Debian's chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    run = _run(tmp_path)
    png = screenshot(build_report(run, tmp_path / "r.html"), tmp_path / "shot.png", width=1000, height=1200)
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape == (1200, 1000, 3) and img.std() > 10  # rendered, not a blank page
    colours = {tuple(c) for c in img.reshape(-1, 3)[:: 7].tolist()}
    assert LEAK in colours and NO_LEAK in colours  # the verdict cells are on screen, in their colours
