"""``privgan release-check``: sample a generator, block samples that re-identify a training identity, gate on the result.

    privgan release-check --checkpoint G.pt --references TRAIN_IDS --n 10000 --block-rate 1e-3 --out release/

``--checkpoint``: a TorchScript generator (``GAN.export_generator``) or a Lightning checkpoint
of ``privgan.modules.GAN``. ``--references``: the training identities, as a folder
``<identity>/<photo>`` or the ``manifest.json`` of a privgan run (all photos of its members).
The threshold is calibrated on faces of people outside the training set (``--calibration``
folder, default LFW under ``$PRIVGAN_DATA`` minus the training identities), at the
generator's resolution. Writes ``allowed/`` (PNG per allowed sample), ``verdicts.csv``,
``summary.json`` and ``blocked_gallery.png`` (each blocked sample beside the training photos
of the identity it matched). Exit code 1 when any generated sample is blocked.

``--plant-copies K`` mixes K edited copies of training photos (JPEG 70, 90 % crop, flip,
±10 % brightness) into the check and ``--holdout-outsiders M`` M faces of further outsiders:
the summary then says what share of each is blocked (the filter's recall and false-block rate).
Planted faces never reach ``allowed/`` and do not set the exit code.
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

EXIT_BLOCKED = 1


def load_generator(path: str | os.PathLike) -> tuple[Callable[[int, torch.Generator], torch.Tensor], int, int]:
    """``sample(n, generator)`` in [0, 1], latent size and image size of a TorchScript or Lightning checkpoint."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--checkpoint {str(p)!r}: no such file")
    scripted = None
    if p.suffix != ".ckpt":  # Lightning checkpoints are tried as such; anything else first as TorchScript
        try:
            scripted = torch.jit.load(str(p), map_location="cpu")
        except (RuntimeError, ValueError):
            scripted = None
    if scripted is not None:
        dim, size = int(scripted.latent_dim), int(scripted.image_size)

        @torch.no_grad()
        def sample(n: int, g: torch.Generator) -> torch.Tensor:
            return scripted(torch.randn(n, dim, generator=g))

        return sample, dim, size
    from privgan.modules.gan import GAN

    try:
        gan = GAN.load_from_checkpoint(str(p), map_location="cpu").eval()
    except Exception as e:  # noqa: BLE001 - say which file and what was expected
        raise ValueError(f"--checkpoint {str(p)!r} is neither a TorchScript generator nor a privgan GAN checkpoint: {e}") from e
    return gan.sample, int(gan.hparams.latent_dim), int(gan.hparams.image_size)


def load_references(spec: str) -> tuple[dict[str, list[Path]], str | None]:
    """Training identities -> photo files, from a folder or a privgan manifest.json; and the data root if known."""
    p = Path(spec).expanduser()
    if p.is_file() and p.suffix == ".json":
        from privgan.data.gan_faces import GanSplitManifest

        m = GanSplitManifest.load(p)
        files = {name: [Path(f) for f in m.train.get(name, []) + m.member_references.get(name, [])] for name in m.members}
        return files, m.root
    if p.is_dir():
        from privgan.data.identity_folders import scan_identity_folders

        return scan_identity_folders(p), None
    raise FileNotFoundError(f"--references {spec!r}: expected an identity folder (<identity>/<photo>) or a privgan manifest.json")


def outsider_files(root: Path, exclude: set[str], *, n_calibration: int, n_holdout: int, seed: int) -> tuple[list[Path], list[Path]]:
    """Two photos each of people outside ``exclude`` (``outsider_identities`` order): calibration people first, then
    further people for the false-block check; 15 % more files than faces needed (some have no face)."""
    from privgan.data.planted import outsider_identities

    cal: list[Path] = []
    hold: list[Path] = []
    for photos in outsider_identities(root, exclude, seed=seed).values():
        part = cal if len(cal) < n_calibration * 1.15 else hold
        if part is hold and len(hold) >= n_holdout * 1.15:
            break
        part += photos[:2]
    return cal, hold


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="privgan release-check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="TorchScript generator or privgan GAN .ckpt")
    p.add_argument("--references", required=True, help="training identities: <identity>/<photo> folder or a run's manifest.json")
    p.add_argument("--n", type=int, default=10000, help="samples to draw and check")
    p.add_argument("--block-rate", "--far", dest="block_rate", type=float, default=1e-3,
                   help="share of faces of people outside the training set that the filter may block (a per-sample "
                        "rate, not a pair false-accept rate; --far is the old name)")
    p.add_argument("--calibration", default=None, help="<identity>/<photo> folder of people outside the training set "
                   "(default: LFW under $PRIVGAN_DATA without the training identities)")
    p.add_argument("--n-calibration", type=int, default=None, help="calibration faces (default max(2000, 2/block-rate))")
    p.add_argument("--plant-copies", type=int, default=0, help="edited copies of training photos to mix in (recall check)")
    p.add_argument("--holdout-outsiders", type=int, default=0, help="faces of further outsiders to check (false-block check)")
    p.add_argument("--embedder", default="sface")
    p.add_argument("--no-mirrored", action="store_true", help="compare with the training photos only, not their mirror images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="release_check")
    p.add_argument("--gallery", type=int, default=16, help="blocked samples shown in blocked_gallery.png")
    p.add_argument("--no-allowed-images", action="store_true", help="do not write allowed/*.png")
    a = p.parse_args(argv)
    if a.n < 1:
        p.error(f"--n must be >= 1, got {a.n}")
    if not 0 < a.block_rate < 1:
        p.error(f"--block-rate must be in (0, 1), got {a.block_rate}")
    return a


def main(argv: list[str]) -> int:
    """Run the check; 0 = nothing blocked, 1 = something blocked."""
    a = parse(argv)
    from privgan.data.planted import edited_copies
    from privgan.defences.release_filter import ReleaseFilter
    from privgan.faces.embedders import build_embedder
    from privgan.faces.preprocess import load_aligned
    from privgan.reporting.local_files import image_grid, write_csv, write_json
    from privgan.paths import lfw_root

    t0 = time.perf_counter()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sample, latent_dim, size = load_generator(a.checkpoint)
    refs, data_root = load_references(a.references)
    names = sorted(refs)
    files = [f for n in names for f in refs[n]]
    labels_all = [k for k, n in enumerate(names) for _ in refs[n]]
    faces = load_aligned(files, size=size)
    train_x, train_files, skipped = faces.images, faces.paths, {k: v for k, v in faces.skipped.items() if v}
    if len(train_x) == 0:
        raise SystemExit(f"privgan release-check: no usable face in {a.references} (skipped: {skipped})")
    pos = {f: i for i, f in enumerate(files)}
    train_y = torch.tensor([labels_all[pos[f]] for f in train_files])

    cal_root = Path(a.calibration) if a.calibration else Path(data_root) if data_root else lfw_root() / "images_deepfunneled"
    if not cal_root.is_dir():
        raise SystemExit(f"privgan release-check: calibration folder {str(cal_root)!r} does not exist (pass --calibration)")
    n_cal = a.n_calibration or max(2000, math.ceil(2 / a.block_rate))
    cal_files, hold_files = outsider_files(cal_root, set(names), n_calibration=n_cal, n_holdout=a.holdout_outsiders, seed=a.seed)
    cal = load_aligned(cal_files, size=size)
    cal_x, cal_skipped = cal.images[:n_cal], {k: v for k, v in cal.skipped.items() if v}
    embedder = build_embedder(a.embedder)
    filt = ReleaseFilter.calibrate(embedder, train_x, train_y, names, cal_x, block_rate=a.block_rate, mirrored=not a.no_mirrored)
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
    summary: dict = {
        "checkpoint": str(a.checkpoint), "references": str(a.references), "n_identities": len(names),
        "n_training_photos": len(train_x), "references_skipped": {k: len(v) for k, v in skipped.items()},
        "embedder": a.embedder, "block_rate": a.block_rate, "threshold": filt.threshold, "image_size": size, "mirrored_gallery": not a.no_mirrored,
        "calibration": {"folder": str(cal_root), "n_faces": len(cal_x), "skipped": {k: len(v) for k, v in cal_skipped.items()}},
        "generated": verdicts.rate(),
        "seconds": {"calibration": t_cal, "sampling": t_sample, "embedding_and_matching": t_check},
        "samples_per_s": {"sampling": a.n / t_sample, "embedding_and_matching": a.n / t_check},
    }
    if a.plant_copies:
        pick = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(a.seed))[: a.plant_copies]
        pick = pick.repeat(math.ceil(a.plant_copies / len(pick)))[: a.plant_copies]
        copies = edited_copies(train_x[pick], generator=torch.Generator().manual_seed(a.seed + 1))
        v = filt.check(copies)
        right = (v.identity == train_y[pick]) & v.blocked
        summary["planted_copies"] = v.rate() | {"blocked_as_the_right_identity": float(right.float().mean())}
        rows += [dict(r, source="planted_copy", sample=i) for i, r in enumerate(v.rows())]
    if a.holdout_outsiders:
        hold_x = load_aligned(hold_files, size=size).images[: a.holdout_outsiders]
        v = filt.check(hold_x)
        summary["holdout_outsiders"] = v.rate() | {"block_rate": a.block_rate, "within_interval": v.rate()["ci_low"] <= a.block_rate}
        rows += [dict(r, source="outsider", sample=i) for i, r in enumerate(v.rows())]
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
            ident = int(verdicts.identity[i])
            same = (train_y == ident).nonzero().squeeze(1)
            sims = filt.gallery[: filt.n_photos][same] @ verdicts.embeddings[i]
            top = same[sims.argsort(descending=True)[:3]]
            grid.append(torch.cat([samples[i : i + 1], train_x[top]]))
            captions.append(f"sample {i} blocked: {names[ident]} sim {float(verdicts.similarity[i]):.2f} (thr {filt.threshold:.2f})")
        image_grid(grid, labels=captions, path=out / "blocked_gallery.png")
    g_rate = summary["generated"]
    print(f"privgan release-check: {int(g_rate['blocked'])} of {a.n} samples blocked at block rate {a.block_rate:g} "
          f"(threshold {filt.threshold:.3f}, calibrated on {len(cal_x)} outsiders' faces); {out / 'summary.json'}")
    for key in ("planted_copies", "holdout_outsiders"):
        if key in summary:
            r = summary[key]
            print(f"  {key}: {int(r['blocked'])}/{int(r['n'])} blocked ({r['blocked_rate']:.4f}, 95% CI [{r['ci_low']:.4f}, {r['ci_high']:.4f}])")
    return EXIT_BLOCKED if len(blocked) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
