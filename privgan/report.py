"""``privgan report RUN_OR_SWEEP_DIR``: one self-contained HTML page of a run's (or a sweep's) privacy–utility results.

Images are embedded (base64), so the page can be mailed or attached to a review. It shows the
curve, a table of every curve point with each attack's value, interval and verdict ("leak" when
the interval lies above chance, "no leak found" otherwise), ε with δ, and attack timings.
Galleries show real faces and are embedded only with ``--galleries``.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from privgan.plotting import leak_verdict

#: Metrics shown in the table when present, in this order.
TABLE_KEYS = (
    "privacy/identity_auc", "privacy/identity_tpr_at_fpr_0.01", "privacy/identity_over_auc",
    "privacy/identity_samples_matching_members", "privacy/identity_samples_matching_nonmembers", "privacy/logan_auc", "privacy/ganleaks_pixel_auc",
    "privacy/ganleaks_embed_auc", "privacy/membership_auc", "privacy/membership_tpr_at_fpr_0.01",
    "privacy/inversion_reid_rate", "privacy/inversion_psnr_db", "privacy/inversion_ssim",
)

CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:12px;margin:1em 0;width:100%}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right;vertical-align:top}
th{background:#f2f2f2;font-weight:600;white-space:normal;word-break:break-word;max-width:110px}
td.run{text-align:left} td small{color:#555;white-space:nowrap}
.leak{background:#fbd5d5}.noleak{background:#d9f2d9}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}
.note{color:#555;font-size:13px}
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return "∞" if math.isinf(v) else f"{v:.3g}"
    return html.escape(str(v))


def _cell(point: dict[str, Any], key: str) -> str:
    if key not in point:
        return "<td></td>"
    v = point[key]
    lo, hi = point.get(f"{key}_ci_low"), point.get(f"{key}_ci_high")
    ci = f"<br><small>[{_fmt(lo)}, {_fmt(hi)}]</small>" if lo is not None and hi is not None else ""
    verdict = leak_verdict(point, key)
    cls = {"leak": "leak", "no leak found": "noleak"}.get(verdict, "")
    title = f' title="{verdict}"' if verdict else ""
    return f'<td class="{cls}"{title}>{_fmt(v)}{ci}</td>'


def _table(rows: list[dict[str, Any]], first: tuple[str, str]) -> str:
    keys = [k for k in TABLE_KEYS if any(k in r for r in rows)]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in (first[1], "utility", "ε") + tuple(k.removeprefix("privacy/").replace("_", " ") for k in keys))
    body = []
    for r in rows:
        eps = r.get("epsilon", math.inf)
        body.append(f'<tr><td class="run">{_fmt(r.get(first[0], ""))}</td><td>{_fmt(r.get("utility", math.nan))}</td>'
                    f"<td>{_fmt(eps)}</td>" + "".join(_cell(r, k) for k in keys) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def run_section(run: Path, galleries: bool) -> str:
    """The HTML of one run folder (curve.json, curve.png, timing.json, config.yaml)."""
    curve = json.loads((run / "curve.json").read_text())
    points = curve.get("points", [])
    parts = [f"<h2>{html.escape(run.name)}</h2>"]
    if points:
        last = points[-1]
        ukey = last.get("utility_key", curve.get("utility_key", "utility"))
        better = "higher" if last.get("utility_higher_is_better", True) else "lower"
        parts.append(f'<p class="note">utility = <code>{html.escape(str(ukey))}</code> ({better} is better); '
                     f"{len(points)} curve points; cells are value [95% CI]; red = interval above chance (leak), "
                     "green = interval includes chance (no leak found: not proof of safety)</p>")
        if any(math.isfinite(p.get("epsilon", math.inf)) for p in points):
            parts.append(f'<p class="note">DP-SGD: ε = {_fmt(last.get("epsilon"))} at δ = {_fmt(last.get("dp/delta", 1e-5))} '
                         "after the last point</p>")
    if points:  # drawn afresh from curve.json, so the page never shows a stale plot
        import tempfile

        from privgan.plotting import plot_run_curve

        keys = [k for k in TABLE_KEYS if any(k in p for p in points) and not k.endswith("samples_matching_nonmembers")]
        with tempfile.TemporaryDirectory() as tmp:
            png = plot_run_curve(points, keys, Path(tmp) / "curve.png", title=run.name)
            parts.append(_img(png, f"privacy-utility curve of {run.name}"))
    parts.append(_table(points, ("epoch", "epoch")))
    if (run / "timing.json").exists():
        t = json.loads((run / "timing.json").read_text())
        parts.append(f'<p class="note">timing: <code>{html.escape(json.dumps(t))}</code></p>')
    if galleries:
        for sub in ("identity", "inversion"):
            pngs = sorted((run / sub).glob("*gallery.png" if sub == "identity" else "epoch_*.png"))
            if pngs:
                parts.append(f"<h3>{sub} gallery ({pngs[-1].name})</h3>" + _img(pngs[-1], f"{sub} gallery"))
    else:
        parts.append('<p class="note">galleries (real faces) not embedded; pass --galleries to include them</p>')
    return "\n".join(parts)


def build_report(target: Path, out: Path, *, galleries: bool = False) -> Path:
    """Write the HTML report of a run folder or a sweep folder (runs inside, sweep.csv / frontier.png)."""
    target = Path(target)
    if (target / "curve.json").exists():
        runs = [target]
    elif target.is_dir():
        runs = sorted(d for d in target.iterdir() if (d / "curve.json").exists())
    else:
        raise FileNotFoundError(f"privgan report: {str(target)!r} is not a folder")
    if not runs:
        raise FileNotFoundError(f"privgan report: no curve.json in {str(target)!r} or its sub-folders")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>privgan report: {html.escape(target.name)}</title>"
             f"<style>{CSS}</style></head><body><h1>privgan report: {html.escape(target.name)}</h1>"]
    if len(runs) > 1:
        finals = [dict(json.loads((r / "curve.json").read_text())["points"][-1], run=r.name)
                  for r in runs if json.loads((r / "curve.json").read_text()).get("points")]
        parts.append("<h2>final point of each run</h2>" + _table(finals, ("run", "run")))
        if (target / "frontier.png").exists():
            parts.append(_img(target / "frontier.png", "privacy-utility frontier"))
    parts += [run_section(r, galleries) for r in runs]
    parts.append("</body></html>")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts))
    return out


def find_chromium() -> str | None:
    """A Chromium / Chrome binary on PATH (Debian: ``apt-get install chromium``), or None."""
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(page: Path, png: Path, *, width: int = 1280, height: int = 1600, timeout: float = 120) -> Path:
    """Render ``page`` in headless Chromium and save what a person would see as ``png``."""
    import subprocess
    import tempfile

    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found on PATH (Debian/Ubuntu: apt-get install chromium)")
    png = Path(png).absolute()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={png}",
               Path(page).absolute().as_uri()]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if r.returncode != 0 or not png.exists():
        raise RuntimeError(f"Chromium could not render {page}: exit {r.returncode}: {r.stderr[-1000:]}")
    return png


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="privgan report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="a run folder (with curve.json) or a sweep folder")
    p.add_argument("--out", default=None, help="HTML file (default TARGET/report.html)")
    p.add_argument("--galleries", action="store_true", help="embed the latest galleries (real faces)")
    p.add_argument("--screenshot", default=None, help="also render the page in headless Chromium to this PNG")
    a = p.parse_args(argv)
    out = build_report(Path(a.target), Path(a.out) if a.out else Path(a.target) / "report.html", galleries=a.galleries)
    print(f"privgan report: {out}")
    if a.screenshot:
        print(f"privgan report: screenshot {screenshot(out, Path(a.screenshot))}")
    return 0
