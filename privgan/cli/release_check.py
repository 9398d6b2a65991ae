"""``privgan release-check``: sample a generator, block samples that re-identify a training identity or copy a
training photo, gate on the result.

    privgan release-check --checkpoint G.pt --references TRAIN_IDS --n 10000 --block-rate 1e-3 --out release/

``--checkpoint``: a generator exported by ``GAN.export_generator`` (torch.export or TorchScript)
or a Lightning checkpoint of ``privgan.modules.GAN``. ``--references``: the training identities,
as a folder ``<identity>/<photo>`` or the ``manifest.json`` of a privgan run (all photos of its
members).

The threshold is calibrated in the domain of the training photos: each training identity's
photos are scored against the gallery of the other training identities (leave one identity out),
pooled with faces of people outside the training set (``--calibration`` folder, default LFW under
``$PRIVGAN_DATA`` minus the training identities), every photo of every identity, at the
generator's resolution. The pool must hold at least 1 / block rate faces. A second signal, the
near-copy detector (crops, tilts and mirror images of every training photo, correlated in pixel
space: ``privgan.defences.copy_detector``), shares the block rate with the recogniser: each has its
own threshold, set on the same faces so that together they block at most the block rate
(``--no-copy-detector`` to use the recogniser alone; off by itself when the pool allows fewer than
two false blocks).

Writes ``allowed/`` (PNG per allowed sample), ``verdicts.csv``, ``summary.json`` and
``blocked_gallery.png`` (each blocked sample beside the training photos of the identity it matched).

Self-test, always: the held-out false-block rate on training identities kept out of the gallery
and of the calibration (cross-validated), with its Wilson interval; ``--holdout-outsiders M``
adds M faces of further outsiders; ``--plant-copies K`` mixes K edited copies of training photos,
drawn from a family of edits (``privgan.data.planted.EDITS``), and reports recall per edit.

Exit codes (the first that applies): 3 the self-test failed (a false-block rate significantly
above the block rate, ``within_interval: false``, or, with ``--min-recall``, an edit's recall
significantly below it); 2 a training identity has no usable reference photo (listed by name;
``--allow-unprotected`` turns this off); 1 some generated samples are blocked; 0 pass. 4: bad
input (the message says what and how to fix it).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch

EXIT_OK, EXIT_BLOCKED, EXIT_UNPROTECTED, EXIT_SELF_TEST_FAILED, EXIT_INPUT = 0, 1, 2, 3, 4
PROG = "privgan release-check"


class InputError(Exception):
    """A problem with the command's input: printed as a message (no traceback), exit code 4."""


def load_generator(path: str | os.PathLike) -> tuple[Callable[[int, torch.Generator], torch.Tensor], int, int]:
    """``sample(n, generator)`` in [0, 1], latent size and image size of an exported generator or Lightning checkpoint."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--checkpoint {str(p)!r}: no such file")
    if p.suffix != ".ckpt":  # Lightning checkpoints are tried as such; anything else first as an exported generator
        module, dim, size = _load_exported(p)
        if module is not None:

            @torch.no_grad()
            def sample(n: int, g: torch.Generator) -> torch.Tensor:
                return module(torch.randn(n, dim, generator=g))

            return sample, dim, size
    from privgan.modules.gan import GAN

    try:
        gan = GAN.load_from_checkpoint(str(p), map_location="cpu").eval()
    except Exception as e:  # noqa: BLE001 - say which file and what was expected
        raise ValueError(f"--checkpoint {str(p)!r} is neither an exported generator (torch.export or TorchScript) nor a privgan GAN checkpoint: {e}") from e
    return gan.sample, int(gan.hparams.latent_dim), int(gan.hparams.image_size)


def _load_exported(p: Path) -> tuple[Callable | None, int, int]:
    """An exported generator file (``privgan.attacks.priors.load_exported_generator``); (None, 0, 0) when it is none."""
    from privgan.attacks.priors import load_exported_generator

    return load_exported_generator(p, label="--checkpoint")


def load_references(spec: str) -> tuple[dict[str, list[Path]], str | None]:
    """Training identities -> photo files, from a folder or a privgan manifest.json; and the data root if known.

    Every identity is kept, also one without any image file (an empty list): it is one the check cannot protect.
    """
    p = Path(spec).expanduser()
    if p.is_file() and p.suffix == ".json":
        from privgan.data.gan_faces import GanSplitManifest

        m = GanSplitManifest.load(p)
        files = {name: [Path(f) for f in m.train.get(name, []) + m.member_references.get(name, [])] for name in m.members}
        return files, m.root
    if p.is_dir():
        from privgan.data.identity_folders import scan_identity_folders

        subdirs = sorted(d.name for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
        try:
            found = scan_identity_folders(p)
        except ValueError as e:
            raise InputError(f"--references {spec!r}: {e}") from e
        return {n: found.get(n, []) for n in subdirs}, None
    raise FileNotFoundError(f"--references {spec!r}: expected an identity folder (<identity>/<photo>) or a privgan manifest.json")


def outsider_files(root: Path, exclude: set[str], *, n_calibration: int, n_holdout: int, seed: int,
                   holdout_per_identity: int = 2) -> tuple[list[Path], list[Path]]:
    """Photos of people outside ``exclude`` (``outsider_identities`` order): calibration people first, every photo of
    each; then further people for the false-block check, at most ``holdout_per_identity`` photos each (photos of one
    person are not independent checks); 15 % more files than faces needed (some have no face)."""
    from privgan.data.planted import outsider_identities

    cal: list[Path] = []
    hold: list[Path] = []
    for photos in outsider_identities(root, exclude, seed=seed).values():
        if len(cal) < n_calibration * 1.15:
            cal += photos
        elif len(hold) < n_holdout * 1.15:
            hold += photos[:holdout_per_identity]
        else:
            break
    return cal, hold


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 4, not argparse's 2 (2 means unprotected identities here)
        self.print_usage(sys.stderr)
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message}\n")


def parse(argv: list[str]) -> argparse.Namespace:
    from privgan.faces.preprocess import ALIGN_METHODS

    p = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="exported generator (GAN.export_generator) or privgan GAN .ckpt")
    p.add_argument("--references", required=True, help="training identities: <identity>/<photo> folder or a run's manifest.json")
    p.add_argument("--n", type=int, default=10000, help="samples to draw and check")
    p.add_argument("--block-rate", "--far", dest="block_rate", type=float, default=1e-3,
                   help="share of innocent faces (of people outside the training set) that the filter may block: a "
                        "per-sample rate, not a pair false-accept rate (--far is the old name)")
    p.add_argument("--calibration", default=None, help="<identity>/<photo> folder of people outside the training set, "
                   "best in the domain of the training photos (default: LFW under $PRIVGAN_DATA without the training identities)")
    p.add_argument("--n-calibration", type=int, default=None,
                   help="outsider faces for calibration (default max(2000, 2/block-rate)); every photo of each person is used")
    p.add_argument("--plant-copies", type=int, default=0,
                   help="edited copies of training photos to mix in, spread evenly over the edit family (recall per edit)")
    p.add_argument("--edits", default=None, help="comma-separated edits for --plant-copies (default: all of "
                   "privgan.data.planted.EDITS)")
    p.add_argument("--min-recall", type=float, default=None,
                   help="fail the self-test (exit 3) when an edit's recall is significantly below this (its CI lies under it)")
    p.add_argument("--holdout-outsiders", type=int, default=0, help="faces of further outsiders to check (false-block check)")
    p.add_argument("--allow-unprotected", action="store_true",
                   help="do not fail (exit 2) when a training identity has no usable reference photo")
    p.add_argument("--align", default="auto" if "auto" in ALIGN_METHODS else "mtcnn", choices=list(ALIGN_METHODS),
                   help="how reference and calibration photos become face crops (privgan.faces.load_aligned)")
    p.add_argument("--embedder", default="sface")
    p.add_argument("--embedder-path", default=None, help="model file for --embedder onnx / facenet")
    p.add_argument("--no-mirrored", action="store_true", help="leave the mirror images of the training photos out of the gallery")
    p.add_argument("--gallery-views", default=None, help="comma-separated views of each training photo in the gallery "
                   "(default: privgan.defences.release_filter.GALLERY_VIEWS; fewer views: faster, lower recall on edited copies)")
    p.add_argument("--no-copy-detector", action="store_true",
                   help="block on the face recogniser alone, without the near-copy detector (privgan.defences.copy_detector)")
    p.add_argument("--copy-rotated-crop-grid", type=int, default=0, metavar="G",
                   help="also compare crops of each tilted training photo, on a grid of 1/G of the side (16: about twice "
                        "the copy detector's time; catches crops of rotated copies); 0: tilts of whole photos only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="release_check")
    p.add_argument("--gallery", type=int, default=16, help="blocked samples shown in blocked_gallery.png")
    p.add_argument("--no-allowed-images", action="store_true", help="do not write allowed/*.png")
    a = p.parse_args(argv)
    if a.n < 1:
        p.error(f"--n must be >= 1, got {a.n}")
    if not 0 < a.block_rate < 1:
        p.error(f"--block-rate must be in (0, 1), got {a.block_rate}")
    if a.plant_copies < 0 or a.holdout_outsiders < 0:
        p.error("--plant-copies and --holdout-outsiders must be >= 0")
    if a.copy_rotated_crop_grid < 0:
        p.error(f"--copy-rotated-crop-grid must be >= 0, got {a.copy_rotated_crop_grid}")
    if a.min_recall is not None and not 0 <= a.min_recall <= 1:
        p.error(f"--min-recall must be in [0, 1], got {a.min_recall}")
    if a.gallery_views:
        from privgan.defences.release_filter import VIEWS

        a.gallery_views = tuple(v.strip() for v in a.gallery_views.split(",") if v.strip())
        bad = [v for v in a.gallery_views if v not in VIEWS]
        if bad or not a.gallery_views:
            p.error(f"--gallery-views: unknown {', '.join(bad) or '(none given)'}; choose from {', '.join(VIEWS)}")
    if a.edits:
        from privgan.data.planted import EDITS

        a.edits = [e.strip() for e in a.edits.split(",") if e.strip()]
        bad = [e for e in a.edits if e not in EDITS]
        if bad:
            p.error(f"--edits: unknown {', '.join(bad)}; choose from {', '.join(EDITS)}")
    return a


def _skip_lines(what: str, faces, n_files: int) -> list[str]:
    """Console lines for the files of ``what`` that gave no face: counts per reason, "too small" ones named."""
    skipped = {k: v for k, v in faces.skipped.items() if v}
    if not skipped:
        return []
    n = sum(len(v) for v in skipped.values())
    lines = [f"  {what}: {n} of {n_files} files skipped ({100 * n / max(1, n_files):.0f}%; "
             + ", ".join(f"{k}: {len(v)}" for k, v in sorted(skipped.items())) + ")"]
    for reason, files in sorted(skipped.items()):
        if reason != "no face":
            lines += [f"    {reason}: {f}" for f in files[:20]] + ([f"    ... {len(files) - 20} more"] if len(files) > 20 else [])
    return lines


def _unprotected(refs: dict[str, list[Path]], used: list[Path], skipped: dict[str, list[str]]) -> dict[str, str]:
    """Training identities with no usable reference photo -> why."""
    used_set = {str(p) for p in used}
    why_of = {f: reason for reason, files in skipped.items() for f in files}
    out = {}
    for name, files in refs.items():
        if any(str(f) in used_set for f in files):
            continue
        if not files:
            out[name] = "no image files"
            continue
        counts: dict[str, int] = {}
        for f in files:
            r = why_of.get(str(f), "not loaded")
            counts[r] = counts.get(r, 0) + 1
        out[name] = f"none of its {len(files)} photos usable (" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + ")"
    return out


def main(argv: list[str]) -> int:
    """Run the check; the exit code is in the module docstring."""
    try:
        return _main(argv)
    except (InputError, FileNotFoundError, ValueError) as e:
        from privgan.defences.release_filter import CalibrationError

        kind = "" if isinstance(e, (InputError, CalibrationError)) else f"{type(e).__name__}: "
        print(f"{PROG}: error: {kind}{e}", file=sys.stderr)
        return EXIT_INPUT


def _main(argv: list[str]) -> int:
    a = parse(argv)
    from privgan.data.planted import EDIT_FAMILY, planted_copies
    from privgan.defences.copy_detector import CopyViews
    from privgan.defences.release_filter import CalibrationError, ReleaseFilter, rate_with_ci, within_interval
    from privgan.faces.embedders import build_embedder
    from privgan.faces.preprocess import load_aligned
    from privgan.paths import lfw_root
    from privgan.reporting.local_files import image_grid, write_csv, write_json

    t0 = time.perf_counter()
    out = Path(a.out)
    sample, _, size = load_generator(a.checkpoint)
    refs, data_root = load_references(a.references)
    names = sorted(refs)
    files = [f for n in names for f in refs[n]]
    label_of = {str(f): k for k, n in enumerate(names) for f in refs[n]}
    faces = load_aligned(files, size=size, align=a.align)
    train_x, train_files = faces.images, faces.paths
    skipped = {k: v for k, v in faces.skipped.items() if v}
    train_y = torch.tensor([label_of[str(f)] for f in train_files], dtype=torch.long)
    unprotected = _unprotected(refs, train_files, faces.skipped)
    console = _skip_lines(f"references ({a.references})", faces, len(files))
    if len(train_x) == 0:
        raise InputError(f"no usable face in --references {a.references}: {len(files)} files of {len(names)} identities, "
                         f"skipped {', '.join(f'{k}: {len(v)}' for k, v in sorted(skipped.items())) or 'none'}. "
                         f"Check the folder, or try --align none for photos that are already face crops")
    out.mkdir(parents=True, exist_ok=True)

    cal_root = Path(a.calibration) if a.calibration else Path(data_root) if data_root else lfw_root() / "images_deepfunneled"
    if not cal_root.is_dir():
        raise InputError(f"calibration folder {str(cal_root)!r} does not exist (pass --calibration <identity>/<photo> folder "
                         "of people outside the training set, or set PRIVGAN_DATA to the folder holding datasets/lfw)")
    n_cal = a.n_calibration or max(2000, math.ceil(2 / a.block_rate))
    try:
        cal_files, hold_files = outsider_files(cal_root, set(names), n_calibration=n_cal, n_holdout=a.holdout_outsiders,
                                               seed=a.seed)
    except ValueError as e:
        cal_files, hold_files = [], []
        console.append(f"  calibration folder {cal_root}: no outsiders used ({e})")
    cal = load_aligned(cal_files, size=size, align=a.align)
    cal_x, cal_names = cal.images[:n_cal], [p.parent.name for p in cal.paths][:n_cal]
    console += _skip_lines(f"calibration ({cal_root})", cal, len(cal_files))
    kwargs = {("weights_path" if a.embedder == "facenet" else "model_path"): a.embedder_path} if a.embedder_path else {}
    if a.embedder == "onnx" and not a.embedder_path:
        raise InputError("--embedder onnx needs --embedder-path pointing to an .onnx face embedding model")
    embedder = build_embedder(a.embedder, **kwargs)
    try:
        filt = ReleaseFilter.calibrate(embedder, train_x, train_y, names, cal_x, block_rate=a.block_rate,
                                       mirrored=not a.no_mirrored, outsider_labels=cal_names, seed=a.seed,
                                       gallery_views=a.gallery_views, copy_detection=not a.no_copy_detector,
                                       copy_views=CopyViews(rotated_crop_grid=a.copy_rotated_crop_grid))
    except CalibrationError as e:
        raise InputError(f"{e} Here: --calibration {str(cal_root)!r} gave {len(cal_x)} outsider faces from "
                         f"{len(cal_files)} files (--n-calibration {n_cal}); --references gave {len(train_x)} training photos "
                         f"of {len(torch.unique(train_y))} identities.") from None
    calib = filt.calibration
    t_cal = time.perf_counter() - t0

    t1 = time.perf_counter()
    g = torch.Generator().manual_seed(a.seed)
    samples = torch.cat([sample(min(256, a.n - s), g).float().clamp(0, 1) for s in range(0, a.n, 256)])
    t_sample = time.perf_counter() - t1
    t2 = time.perf_counter()
    verdicts = filt.check(samples)
    t_check = time.perf_counter() - t2
    rows = [dict(r, source="generated") for r in verdicts.rows()]
    for r in rows:
        r["training_photo"] = str(train_files[r["training_photo"]])
        if "copy_training_photo" in r:
            r["copy_training_photo"] = str(train_files[r["copy_training_photo"]])
    summary: dict = {
        "checkpoint": str(a.checkpoint), "references": str(a.references), "n_identities": len(names),
        "n_training_photos": len(train_x), "references_skipped": {k: len(v) for k, v in skipped.items()},
        "references_skipped_files": skipped,
        "unprotected_identities": unprotected, "allow_unprotected": a.allow_unprotected,
        "embedder": a.embedder, "block_rate": a.block_rate, "threshold": filt.threshold,
        "copy_threshold": filt.copy_threshold if filt.copy_detector is not None else None, "image_size": size,
        "mirrored_gallery": not a.no_mirrored, "align": a.align,
        "calibration": {"folder": str(cal_root), "n_faces": len(cal_x), "n_identities": len(set(cal_names)),
                        "skipped": {k: len(v) for k, v in cal.skipped.items() if v}} | calib.summary(),
        "generated": verdicts.rate() | {"by_identity": int(verdicts.by_identity.sum()), "by_copy": int(verdicts.by_copy.sum())},
        "seconds": {"calibration": t_cal, "sampling": t_sample, "embedding_and_matching": t_check},
        "samples_per_s": {"sampling": a.n / t_sample, "embedding_and_matching": a.n / t_check},
    }
    held_cal = summary["calibration"]["heldout_training_domain"]
    held_cal["blocked_photos"] = [dict(b, photo=str(train_files[b["photo"]])) for b in held_cal["blocked_photos"]]
    failures: list[str] = []
    false_blocks = {"heldout_training_identities": held_cal}
    if a.holdout_outsiders:
        hold = load_aligned(hold_files, size=size, align=a.align)
        hold_x = hold.images[: a.holdout_outsiders]
        v = filt.check(hold_x)
        summary["holdout_outsiders"] = v.rate() | {"block_rate": a.block_rate, "within_interval": within_interval(v.rate(), a.block_rate)}
        false_blocks["holdout_outsiders"] = summary["holdout_outsiders"]
        rows += [dict(r, source="outsider", sample=i) for i, r in enumerate(v.rows())]
        if len(hold_x) < a.holdout_outsiders:
            console.append(f"  holdout outsiders: only {len(hold_x)} faces of the {a.holdout_outsiders} asked for")
    for key, r in false_blocks.items():
        if r["n"] and not r["within_interval"]:
            failures.append(f"{key}: false-block rate {r['blocked_rate']:.4f} (95% CI [{r['ci_low']:.4f}, {r['ci_high']:.4f}]) "
                            f"is above the block rate {a.block_rate:g}")
    if a.plant_copies:
        edits = a.edits or list(EDIT_FAMILY)
        copies, src, edit_of = planted_copies(train_x, a.plant_copies, edits=edits, generator=torch.Generator().manual_seed(a.seed + 1))
        v = filt.check(copies)
        right = (v.matched_identity == train_y[src]) & v.blocked
        per_edit = {}
        for e in edits:
            idx = torch.tensor([i for i, x in enumerate(edit_of) if x == e], dtype=torch.long)
            if not len(idx):
                continue
            r = rate_with_ci(v.blocked[idx])
            per_edit[e] = {"recall": r["blocked_rate"], "recall_ci": [r["ci_low"], r["ci_high"]], "n": int(r["n"]),
                           "blocked_as_the_right_identity": float(right[idx].float().mean()),
                           "by_identity": float(v.by_identity[idx].float().mean()), "by_copy": float(v.by_copy[idx].float().mean())}
            if a.min_recall is not None and r["ci_high"] < a.min_recall:
                failures.append(f"planted copies, edit {e}: recall {r['blocked_rate']:.3f} (95% CI [{r['ci_low']:.3f}, "
                                f"{r['ci_high']:.3f}]) is below --min-recall {a.min_recall:g}")
        summary["planted_copies"] = v.rate() | {"blocked_as_the_right_identity": float(right.float().mean()), "per_edit": per_edit}
        rows += [dict(r, source="planted_copy", sample=i, edit=edit_of[i]) for i, r in enumerate(v.rows())]
    summary["self_test"] = {"passed": not failures, "failures": failures}
    exit_code = (EXIT_SELF_TEST_FAILED if failures else EXIT_UNPROTECTED if unprotected and not a.allow_unprotected
                 else EXIT_BLOCKED if int(verdicts.blocked.sum()) else EXIT_OK)
    summary["exit_code"] = exit_code
    write_csv(out / "verdicts.csv", rows)
    write_json(out / "summary.json", summary)

    if not a.no_allowed_images:
        from PIL import Image

        allowed = out / "allowed"
        allowed.mkdir(exist_ok=True)
        for i in (~verdicts.blocked).nonzero().squeeze(1).tolist():
            arr = (samples[i].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
            Image.fromarray(arr).save(allowed / f"{i:06d}.png")
    blocked = verdicts.blocked.nonzero().squeeze(1)
    if len(blocked):
        order = blocked[verdicts.similarity[blocked].argsort(descending=True)][: a.gallery]
        grid, captions = [], []
        for i in order.tolist():
            if bool(verdicts.by_identity[i]):
                ident = int(verdicts.identity[i])
                rows_of = (filt.labels == ident).nonzero().squeeze(1)
                ranked = filt.photo_index[rows_of[(filt.gallery[rows_of] @ verdicts.embeddings[i]).argsort(descending=True)]]
                top = list(dict.fromkeys(ranked.tolist()))[:3]
                why = f"sim {float(verdicts.similarity[i]):.2f} (thr {filt.threshold:.2f})"
            else:  # a near copy the recogniser missed: the photo it copies
                ident, top = int(verdicts.copy_identity[i]), [int(verdicts.copy_photo[i])]
                why = f"copy corr {float(verdicts.copy_similarity[i]):.3f} (thr {filt.copy_threshold:.3f})"
            grid.append(torch.cat([samples[i : i + 1], train_x[top]]))
            captions.append(f"sample {i} blocked: {names[ident]} {why}")
        image_grid(grid, labels=captions, path=out / "blocked_gallery.png")

    g_rate = summary["generated"]
    copy_part = (f"; near copies: correlation threshold {filt.copy_threshold:.3f}, {g_rate['by_copy']} blocked"
                 if filt.copy_detector is not None else "")
    print(f"{PROG}: {int(g_rate['blocked'])} of {a.n} samples blocked at block rate {a.block_rate:g} "
          f"(face recogniser: threshold {filt.threshold:.3f}, {g_rate['by_identity']} blocked{copy_part}; calibrated on "
          f"{calib.n_domain} training photos scored leave-one-identity-out + {calib.n_outsiders} faces of outsiders); "
          f"{out / 'summary.json'}")
    if calib.copy_note:
        print(f"  {calib.copy_note}")
    for line in console:
        print(line)
    sh = calib.summary()["distribution_shift"]
    if sh is not None:
        msg = (f"  distribution shift, calibration faces vs references: p = {sh['p_value']:.4f} (permutation test on "
               f"identity-mean embeddings, {sh['n_reference_identities']} vs {sh['n_calibration_identities']} identities)")
        if sh["warning"]:
            msg += ("\n  WARNING: the calibration faces and the references differ in distribution: only the leave-one-"
                    "identity-out part of the calibration speaks for the training photos' domain; pass --calibration "
                    "with faces like the training photos")
        print(msg)
    label = {"heldout_training_identities": "held-out training identities (each left out of gallery and calibration)",
             "holdout_outsiders": "held-out outsiders"}
    for key, r in false_blocks.items():
        if r["n"]:
            print(f"  false blocks, {label[key]}: {int(r['blocked'])}/{int(r['n'])} ({r['blocked_rate']:.4f}, "
                  f"95% CI [{r['ci_low']:.4f}, {r['ci_high']:.4f}]) at block rate {a.block_rate:g}; "
                  f"within_interval: {str(r['within_interval']).lower()}")
            for b in r.get("blocked_photos", [])[:5]:  # look-alikes, or one person under two names
                what = "copy correlation" if b.get("by") == "copy" else "similarity"
                print(f"    {b['photo']} ({b['identity']}) matched {b['matched']}: {what} "
                      f"{b['similarity']:.3f} > {b['threshold']:.3f}")
        else:
            print(f"  false blocks, {label[key]}: no faces to check (needs 3 or more training identities)")
    if "planted_copies" in summary:
        r = summary["planted_copies"]
        print(f"  planted copies: {int(r['blocked'])}/{int(r['n'])} blocked ({r['blocked_rate']:.4f}, 95% CI "
              f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]); recall per edit:")
        for e, x in r["per_edit"].items():
            print(f"    {e:<11} recall {x['recall']:.3f} (95% CI [{x['recall_ci'][0]:.3f}, {x['recall_ci'][1]:.3f}], n={x['n']}); "
                  f"as the right identity {x['blocked_as_the_right_identity']:.3f}; by the recogniser {x['by_identity']:.3f}, "
                  f"as a near copy {x['by_copy']:.3f}")
    if unprotected:
        print(f"  {len(unprotected)} training identities cannot be protected (no usable reference photo)"
              f"{' [allowed by --allow-unprotected]' if a.allow_unprotected else ''}:")
        for n, why in unprotected.items():
            print(f"    {n}: {why}")
    if failures:
        print("  self-test FAILED:")
        for f in failures:
            print(f"    {f}")
    meaning = {EXIT_OK: "pass", EXIT_BLOCKED: "samples blocked", EXIT_UNPROTECTED: "training identities unprotected "
               "(--allow-unprotected to accept)", EXIT_SELF_TEST_FAILED: "self-test failed"}[exit_code]
    print(f"  exit code {exit_code}: {meaning}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
