"""``privgan report RUN_OR_SWEEP_DIR``: one self-contained HTML page of a run's (or a sweep's) privacy–utility results.

A row per curve point: utility, ε at the run's δ, each attack's signals as value [95% CI] coloured
against their own chance level, and its verdict with the leaking signals and notes.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str]) -> int:
    """Parse the arguments, write the page (and a Chromium screenshot when asked)."""
    from privgan.reporting.html_report import build_report, screenshot

    p = argparse.ArgumentParser(prog="privgan report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="a run folder (with curve.json or attack_curve.json) or a sweep folder")
    p.add_argument("--out", default=None, help="HTML file (default TARGET/report.html)")
    p.add_argument("--galleries", action="store_true", help="embed the latest galleries (real faces)")
    p.add_argument("--screenshot", default=None, help="also render the page in headless Chromium to this PNG")
    a = p.parse_args(argv)
    out = build_report(Path(a.target), Path(a.out) if a.out else Path(a.target) / "report.html", galleries=a.galleries)
    print(f"privgan report: {out}")
    if a.screenshot:
        print(f"privgan report: screenshot {screenshot(out, Path(a.screenshot))}")
    return 0
