"""Release filter robustness: recall per edit of planted copies, and held-out false blocks, on LFW and on LFW made unlike LFW.

    python benchmarks/release_robustness.py [--out benchmarks/results/release_robustness.json]   # make bench-release

Training identities: ``--n-identities`` (64) LFW people with 10 to 40 photos, every photo of each
(seeded draw). Outsiders: the other LFW people in ``outsider_identities`` order: the first
``--n-calibration`` faces calibrate (up to ``--per-outsider``, 10, photos per person), the next
``--n-holdout`` of further people (up to ``--holdout-per-outsider``, 2, photos each: photos of one
person are not independent checks) are the held-out innocent faces. Faces are aligned by ``load_aligned`` (MTCNN,
disk-cached) and embedded by SFace at the GAN's resolution, ``--size`` (32 px).

Two domains: ``lfw`` as it is, and ``transformed``: training photos, calibration and held-out
outsiders all passed through one ``unlike_lfw`` shift (tight_crop + grayscale + harsh_light) and
calibrated in that domain. For each domain and block rate (1e-3, 1e-2) the filter is calibrated by
``ReleaseFilter.calibrate`` (leave-one-identity-out over the training photos pooled with the
calibration outsiders), then each edit of ``privgan.data.planted.EDITS`` is applied to
``--copies`` training photos and the share blocked is its recall.

Writes ``{"lfw": E, "transformed": E}``, ``E = {edit: {"0.001": R, "0.01": R}}``,
``R = {"recall", "recall_ci", "false_block_rate", "false_block_ci", "n"}``: ``n`` is the number of
edited copies; the false-block rate is that of the held-out outsiders of the domain (the same for
every edit; its count is printed, with the cross-validated rate on held-out training identities).
Embeddings are cached under ``--cache`` (keyed by image content), so reruns are quick.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHIFT = ("tight_crop", "grayscale", "harsh_light")
#: Edits applied one after another: beyond the family the target is set on, to show how far the gate's recall carries.
COMPOUND = (("crop", "jpeg", "brightness"), ("rotation", "crop"), ("resize", "crop", "flip"), ("crop", "grayscale", "contrast"))


class CachingEmbedder:
    """Wraps an embedder; remembers every face's embedding by a hash of its pixels (saved to ``path``)."""

    def __init__(self, inner, path: Path) -> None:
        import torch

        self.inner, self.path, self.name = inner, path, getattr(inner, "name", "embedder")
        self.memo: dict[bytes, object] = torch.load(path) if path.is_file() else {}
        self.n_new = 0

    def embed(self, faces):
        import torch

        keys = [hashlib.sha1(f.contiguous().numpy().tobytes()).digest() for f in faces.float()]
        todo = [i for i, k in enumerate(keys) if k not in self.memo]
        for s in range(0, len(todo), 64):
            idx = todo[s : s + 64]
            for i, e in zip(idx, self.inner.embed(faces[idx])):
                self.memo[keys[i]] = e.clone()
            self.n_new += len(idx)
            if self.n_new and self.n_new % 2048 < 64:
                self.save()
        return torch.stack([self.memo[k] for k in keys]) if keys else torch.empty(0, 128)

    def save(self) -> None:
        import torch

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save(self.memo, tmp)
        os.replace(tmp, self.path)


def pick_people(lfw: Path, a: argparse.Namespace) -> tuple[dict[str, list[Path]], list[Path], list[Path]]:
    from privgan.data.identity_folders import scan_identity_folders
    from privgan.data.planted import outsider_identities

    folders = scan_identity_folders(lfw)
    eligible = sorted(n for n, f in folders.items() if a.min_photos <= len(f) <= a.max_photos)
    train = {n: folders[n] for n in sorted(random.Random(a.seed).sample(eligible, a.n_identities))}
    cal: list[Path] = []
    hold: list[Path] = []
    for photos in outsider_identities(lfw, set(train), seed=a.seed).values():
        if len(cal) < a.n_calibration * 1.1:
            cal += photos[: a.per_outsider]
        elif len(hold) < a.n_holdout * 1.1:
            hold += photos[: a.holdout_per_outsider]
        else:
            break
    return train, cal, hold


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(RESULTS / "release_robustness.json"))
    p.add_argument("--cache", default=str(ROOT / "runs" / "bench-release"))
    p.add_argument("--n-identities", type=int, default=64)
    p.add_argument("--min-photos", type=int, default=10)
    p.add_argument("--max-photos", type=int, default=40)
    p.add_argument("--per-outsider", type=int, default=10, help="photos per calibration outsider (at most)")
    p.add_argument("--holdout-per-outsider", type=int, default=2, help="photos per held-out outsider (at most)")
    p.add_argument("--n-calibration", type=int, default=2000)
    p.add_argument("--n-holdout", type=int, default=2000)
    p.add_argument("--copies", type=int, default=300, help="edited copies per edit")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--domains", default="lfw,transformed")
    p.add_argument("--gallery-views", default=None, help="comma-separated (default: release_filter.GALLERY_VIEWS)")
    p.add_argument("--sample-views", default=None, help="comma-separated (default: release_filter.SAMPLE_VIEWS)")
    p.add_argument("--explore", default=None, help="';'-separated gallery|sample view configs to compare (no JSON written)")
    p.add_argument("--rates", default="0.001,0.01", help="block rates (comma-separated)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    import cv2
    import torch

    from privgan.data.planted import EDIT_FAMILY, apply_edit, unlike_lfw
    from privgan.defences.release_filter import GALLERY_VIEWS, SAMPLE_VIEWS, ReleaseFilter, rate_with_ci
    from privgan.faces.embedders import build_embedder
    from privgan.faces.preprocess import load_aligned
    from privgan.paths import lfw_root

    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    t0 = time.perf_counter()
    lfw = lfw_root() / "images_deepfunneled"
    train, cal_files, hold_files = pick_people(lfw, a)
    names = sorted(train)
    files = [f for n in names for f in train[n]]
    print(f"{len(names)} training identities, {len(files)} photos; {len(cal_files)} calibration and {len(hold_files)} "
          f"held-out outsider files", flush=True)

    def aligned(fs: list[Path], what: str):
        t = time.perf_counter()
        r = load_aligned(fs, size=a.size, align="mtcnn")
        print(f"  {what}: {r.summary()} [{time.perf_counter() - t:.0f} s]", flush=True)
        return r

    tr = aligned(files, "training photos")
    train_x = tr.images
    train_y = torch.tensor([names.index(Path(f).parent.name) for f in tr.paths])
    ca = aligned(cal_files, "calibration outsiders")
    cal_x, cal_names = ca.images[: a.n_calibration], [f.parent.name for f in ca.paths][: a.n_calibration]
    ho = aligned(hold_files, "held-out outsiders")
    hold_x = ho.images[: a.n_holdout]
    emb = CachingEmbedder(build_embedder("sface"), Path(a.cache) / f"sface_{a.size}px.pt")

    configs = []
    if a.explore:
        for c in a.explore.split(";"):
            gv, sv = c.split("|")
            configs.append((tuple(gv.split(",")), tuple(sv.split(","))))
    else:
        configs.append((tuple(a.gallery_views.split(",")) if a.gallery_views else GALLERY_VIEWS,
                        tuple(a.sample_views.split(",")) if a.sample_views else SAMPLE_VIEWS))
    result: dict = {}
    for domain in a.domains.split(","):
        g = torch.Generator().manual_seed(a.seed + 7)
        if domain == "lfw":
            tx, cx, hx = train_x, cal_x, hold_x
        elif domain == "transformed":
            tx, cx, hx = (unlike_lfw(x, SHIFT, generator=g) for x in (train_x, cal_x, hold_x))
        else:
            raise SystemExit(f"unknown domain {domain!r}")
        copies = {}
        for e in EDIT_FAMILY:
            ge = torch.Generator().manual_seed(a.seed + 100 + EDIT_FAMILY.index(e))
            src = torch.randint(0, len(tx), (a.copies,), generator=ge)
            copies[e] = (apply_edit(tx[src], e, generator=ge), src)
        for k, chain in enumerate(COMPOUND):
            ge = torch.Generator().manual_seed(a.seed + 200 + k)
            src = torch.randint(0, len(tx), (a.copies,), generator=ge)
            x = tx[src]
            for e in chain:
                x = apply_edit(x, e, generator=ge)
            copies["+".join(chain)] = (x, src)
        for gv, sv in configs:
            E: dict = {e: {} for e in copies}
            for rate in [float(r) for r in a.rates.split(",")]:
                t = time.perf_counter()
                filt = ReleaseFilter.calibrate(emb, tx, train_y, names, cx, block_rate=rate, outsider_labels=cal_names,
                                               gallery_views=gv, sample_views=sv, seed=a.seed)
                c = filt.calibration
                hv = filt.check(hx)
                fb = rate_with_ci(hv.blocked)
                cv = c.heldout_domain
                line = (f"[{domain} {rate:g} g={','.join(gv)} s={','.join(sv)}] thr {filt.threshold:.3f}, copy thr "
                        f"{filt.copy_threshold:.4f} (held-out outsiders by recogniser {int(hv.by_identity.sum())}, by copy "
                        f"{int(hv.by_copy.sum())}) "
                        f"({', '.join(f'{k} {v:.3f}' for k, v in c.thresholds.items())}); held-out outsiders "
                        f"{int(fb['blocked'])}/{int(fb['n'])} [{fb['ci_low']:.4f}, {fb['ci_high']:.4f}]; held-out training ids "
                        f"{int(cv['blocked'])}/{int(cv['n'])} [{cv['ci_low']:.4f}, {cv['ci_high']:.4f}]; shift p "
                        f"{c.shift['p_value'] if c.shift else float('nan'):.3f}")
                recalls = []
                for e in copies:
                    x, src = copies[e]
                    v = filt.check(x)
                    r = rate_with_ci(v.blocked)
                    E[e][f"{rate:g}"] = {"recall": r["blocked_rate"], "recall_ci": [r["ci_low"], r["ci_high"]],
                                         "false_block_rate": fb["blocked_rate"], "false_block_ci": [fb["ci_low"], fb["ci_high"]],
                                         "n": int(r["n"]), "recall_recogniser": float(v.by_identity.float().mean()),
                                         "recall_copy_detector": float(v.by_copy.float().mean()),
                                         "compound": e not in EDIT_FAMILY}
                    recalls.append(f"{e} {r['blocked_rate']:.3f}")
                emb.save()
                print(line + "\n    recall: " + ", ".join(recalls) + f" [{time.perf_counter() - t:.0f} s]", flush=True)
            result[domain] = E
    emb.save()
    if not a.explore:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        print(f"wrote {out} [{time.perf_counter() - t0:.0f} s]")


if __name__ == "__main__":
    sys.exit(main())
