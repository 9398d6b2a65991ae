"""One self-contained HTML page (images embedded) of a run's or a sweep's privacy–utility results, from typed curve points.

A row per point: utility, ε with the run's own δ, each Result's signals as value [95% CI] coloured
against their own chance level, and its verdict with the leaking signals and notes. Galleries
(real faces) only when asked.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

from privgan.reporting.points import DEFAULT_KEYS, CurvePoint, load_curve

#: Curve files a run folder may hold: the callback's, and the one ``privgan attack`` appends to.
CURVE_FILES = {"curve.json": "curve during training", "attack_curve.json": "post-hoc attacks (privgan attack)"}
VERDICT_CLASS = {"leak": "leak", "no leak found": "noleak", "inconclusive": "unsure"}

CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px} .note{color:#555;font-size:13px}
table{border-collapse:collapse;font-size:12px;margin:1em 0;width:100%} img{max-width:100%;border:1px solid #ddd;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right;vertical-align:top} td.run,td.verdict{text-align:left} td small{color:#555}
th{background:#f2f2f2;font-weight:600;max-width:110px} td.verdict{max-width:300px;word-break:break-word}
.leak{background:#fbd5d5}.noleak{background:#d9f2d9}.unsure{background:#eee}"""


def _img(path: Path, alt: str) -> str:
    """``path`` as an embedded PNG."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'


def _fmt(v: Any) -> str:
    """A number as a person reads it: 3 significant digits, ∞, blank for NaN / None."""
    if not isinstance(v, float):
        return "" if v is None else html.escape(str(v))
    return "" if math.isnan(v) else "∞" if math.isinf(v) else f"{v:.3g}"


def _columns(points: Sequence[CurvePoint]) -> dict[str, list[str]]:
    """Per Result name (first seen first): its default keys present, then its headlines."""
    names = dict.fromkeys(n for p in points for n in p.results)
    return {n: list(dict.fromkeys([k for k in DEFAULT_KEYS if k.startswith(n + "/") and any(p.signal(k) for p in points)]
                                  + [f"{n}/{p.results[n].headline}" for p in points if n in p.results])) for n in names}


def _signal_cell(point: CurvePoint, key: str) -> str:
    """Value [CI], coloured by the Signal's interval against its own chance (and grey when its Result is inconclusive)."""
    s = point.signal(key)
    if s is None:
        return "<td></td>"
    verdict = point.results[key.partition("/")[0]].verdict
    cls = "" if not s.decides else "leak" if s.above_chance else "unsure" if verdict == "inconclusive" else "noleak"
    title = f"chance {s.chance:.3g}: interval {'above' if s.above_chance else 'includes or is below'} it" if s.decides else "no chance level"
    ci = f"<br><small>[{_fmt(s.ci[0])}, {_fmt(s.ci[1])}]</small>" if s.ci else ""
    return f'<td class="{cls}" title="{html.escape(title)}">{_fmt(s.value)}{ci}</td>'


def _verdict_cell(point: CurvePoint, name: str) -> str:
    """The Result's verdict, the signals that leak and its notes."""
    r = point.results.get(name)
    if r is None:
        return "<td></td>"
    extra = ([f"leaking: {', '.join(r.leaking)}"] if r.leaking else []) + list(r.notes)
    small = "".join(f"<br><small>{html.escape(x)}</small>" for x in extra)
    return f'<td class="verdict {VERDICT_CLASS[r.verdict]}" title="{r.verdict}">{r.verdict}{small}</td>'


def points_table(rows: Sequence[tuple[str, CurvePoint]], label: str) -> str:
    """A table with a row per (label, point): position, utility, ε, δ, each Result's signals and verdict."""
    cols = _columns([p for _, p in rows])
    head = [label, "step", "utility", "ε", "δ"] + [h for n, keys in cols.items()
                                                  for h in [k.replace("/", " ").replace("_", " ") for k in keys] + [f"{n} verdict"]]
    body = "".join(
        f'<tr><td class="run">{_fmt(lab)}</td><td>{p.step}</td><td>{_fmt(p.utility)}</td><td>{_fmt(p.epsilon)}</td><td>{_fmt(p.delta)}</td>'
        + "".join("".join(_signal_cell(p, k) for k in keys) + _verdict_cell(p, n) for n, keys in cols.items()) + "</tr>"
        for lab, p in rows)
    return "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + f"</tr>{body}</table>"


def curve_section(title: str, points: list[CurvePoint]) -> str:
    """Notes (utility, ε with the run's δ), the curve drawn afresh, and the table of one curve file."""
    import tempfile

    from privgan.reporting.plots import plot_run_curve

    last = points[-1]
    better = "higher" if last.utility_higher_is_better else "lower"
    dp = (f"DP-SGD: ε = {_fmt(last.epsilon)} at δ = {_fmt(last.delta)} after the last point" if last.delta is not None
          else "not trained with DP-SGD (ε = ∞)")
    parts = [f'<p class="note">utility = <code>{html.escape(last.utility_key)}</code> ({better} is better); {len(points)} curve points; '
             f"{dp}. Cells are value [95% CI]: red = interval above that signal's chance level (leak), green = it is not and the "
             "attack converged (no leak found: not proof of safety), grey = inconclusive.</p>"]
    if any(math.isfinite(p.utility) for p in points):  # drawn from the points, so the page never shows a stale plot
        with tempfile.TemporaryDirectory() as tmp:
            parts.append(_img(plot_run_curve(points, DEFAULT_KEYS, Path(tmp) / "curve.png", title=title), f"privacy-utility curve of {title}"))
    parts.append(points_table([(str(p.epoch), p) for p in points], "epoch"))
    return "\n".join(parts)


def run_section(run: Path, galleries: bool) -> str:
    """The HTML of one run folder: each curve file, timings, and (when asked) the latest galleries."""
    parts = [f"<h2>{html.escape(run.name)}</h2>"]
    names: dict[str, None] = {}
    for fname, what in CURVE_FILES.items():
        if (run / fname).exists() and (points := load_curve(run / fname)):
            names |= dict.fromkeys(n for p in points for n in p.results)
            parts += [f"<h3>{what}</h3>", curve_section(run.name, points)]
    if (run / "timing.json").exists():
        timing = json.dumps(json.loads((run / "timing.json").read_text()))
        parts.append(f'<p class="note">timing: <code>{html.escape(timing)}</code></p>')
    found = {n: pngs[-1] for n in names if (pngs := sorted((run / n).glob("*_gallery.png")))}
    if galleries:
        parts += [f"<h3>{html.escape(n)} gallery ({f.name})</h3>" + _img(f, f"{n} gallery") for n, f in found.items()]
    elif found:
        parts.append('<p class="note">galleries (real faces) not embedded; pass --galleries to include them</p>')
    return "\n".join(parts)


def _has_curve(folder: Path) -> bool:
    """Whether ``folder`` is a run folder (holds a curve file)."""
    return any((folder / f).exists() for f in CURVE_FILES)


def build_report(target: Path, out: Path, *, galleries: bool = False) -> Path:
    """Write the HTML report of a run folder or of a sweep folder (runs inside, frontier.png)."""
    target = Path(target)
    if not target.is_dir():
        raise FileNotFoundError(f"privgan report: {str(target)!r} is not a folder")
    runs = [target] if _has_curve(target) else sorted(d for d in target.iterdir() if d.is_dir() and _has_curve(d))
    if not runs:
        raise FileNotFoundError(f"privgan report: no curve.json in {str(target)!r} or its sub-folders")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>privgan report: {html.escape(target.name)}</title>"
             f"<style>{CSS}</style></head><body><h1>privgan report: {html.escape(target.name)}</h1>"]
    if len(runs) > 1:
        finals = [(r.name, pts[-1]) for r in runs if (r / "curve.json").exists() and (pts := load_curve(r))]
        parts.append("<h2>final point of each run</h2>" + points_table(finals, "run"))
        if (target / "frontier.png").exists():
            parts.append(_img(target / "frontier.png", "privacy-utility frontier"))
    parts += [run_section(r, galleries) for r in runs] + ["</body></html>"]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts))
    return out


def find_chromium() -> str | None:
    """A Chromium / Chrome binary on PATH (Debian: ``apt-get install chromium``), or None."""
    import shutil

    return next((found for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if (found := shutil.which(name))), None)


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
