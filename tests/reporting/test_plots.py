"""Plots read typed curve points: a panel per key present, chance lines from each Signal, marks from each Result's verdict."""

import math

import pytest

from privgan.attacks.result import Result, Signal
from privgan.reporting import plots
from privgan.reporting.plots import plot_frontier, plot_run_curve, present_keys, verdict_mark
from privgan.reporting.points import CurvePoint


def point(epoch: int, utility: float, rate: float, ci: tuple[float, float], *, far: float = 0.05, eps: float = math.inf,
          converged: bool = True) -> CurvePoint:
    """A split-model point whose inversion re-id rate has chance ``far``."""
    r = Result("inversion", {"reid_rate": Signal(rate, far, ci), "psnr_db": Signal(12.0 + epoch)}, "reid_rate", converged=converged)
    return CurvePoint(step=10 * (epoch + 1), epoch=epoch, utility_key="utility/val_acc", utility=utility, epsilon=eps,
                      delta=None if math.isinf(eps) else 1e-6, results={"inversion": r})


def test_marks_come_from_the_results_verdict():
    quiet, leaky, unsure = point(0, 0.3, 0.06, (0.03, 0.10)), point(1, 0.5, 0.4, (0.3, 0.5)), point(2, 0.5, 0.06, (0.0, 0.1), converged=False)
    assert verdict_mark(quiet, "inversion/reid_rate") == " (no leak found)"  # near chance 0.05: the old 1e-3 said "leak"
    assert verdict_mark(leaky, "inversion/reid_rate") == ""
    assert verdict_mark(unsure, "inversion/psnr_db") == " (inconclusive)"
    assert verdict_mark(quiet, "membership/auc") == ""
    assert present_keys([quiet, leaky], ["membership/auc", "inversion/reid_rate", "inversion/psnr_db"]) == [
        "inversion/reid_rate", "inversion/psnr_db"]
    assert present_keys([quiet], ["membership/auc"]) == ["inversion/reid_rate"]  # no default key: each Result's headline
    assert not hasattr(plots, "CHANCE") and not hasattr(plots, "leak_verdict")  # one verdict rule, owned by Result


def test_run_curve_draws_chance_and_interval_from_the_signal(tmp_path, monkeypatch):
    drawn = {}
    plt = plots._plt()
    real_save = plots._save

    def keep(fig, path, dpi=90):
        drawn["axes"] = [ax for ax in fig.axes if ax.get_ylabel()]
        drawn["texts"] = [t.get_text() for ax in drawn["axes"] for t in ax.texts]
        drawn["hlines"] = {ax.get_ylabel(): [ln.get_ydata()[0] for ln in ax.lines if ln.get_linestyle() == ":"] for ax in drawn["axes"]}
        return real_save(fig, path, dpi)

    monkeypatch.setattr(plots, "_save", keep)
    pts = [point(0, 0.3, 0.06, (0.03, 0.10), eps=2.0), point(1, 0.5, 0.4, (0.3, 0.5), eps=3.0)]
    out = plot_run_curve(pts, ["inversion/reid_rate", "inversion/psnr_db", "membership/auc"], tmp_path / "c.png", title="t")
    assert out.stat().st_size > 5000 and len(drawn["axes"]) == 2  # a panel per key present
    assert drawn["hlines"] == {"inversion/reid_rate": [0.05], "inversion/psnr_db": []}  # chance from the Signal, none for PSNR
    assert "e0 ε=2 (no leak found)" in drawn["texts"] and "e1 ε=3" in drawn["texts"]
    plt.close("all")


def test_frontier_takes_one_final_point_per_run(tmp_path):
    finals = {"noise=0": point(1, 0.6, 0.5, (0.4, 0.6)), "noise=2": point(1, 0.3, 0.06, (0.03, 0.1), eps=1.5)}
    assert plot_frontier(finals, ["inversion/reid_rate"], tmp_path / "f.png").stat().st_size > 5000
    with pytest.raises(ValueError, match="none of the runs"):
        plot_frontier({"empty": CurvePoint(step=0, epoch=0, utility_key="u", utility=0.5)}, ["inversion/reid_rate"], tmp_path / "g.png")
