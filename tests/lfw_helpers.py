"""Helpers shared by the tests that use real LFW faces (GAN attacks, callbacks, adapters).

Shared helpers live here: real LFW faces picked by a seeded draw and aligned through the
project's own (disk-cached) ``align_files``, and a context that keeps torch on one thread.
"""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one CPU thread inside the block (the test machine is shared), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def lfw_identities(lfw_dir: Path, *, min_images: int, count: int, seed: int, exclude: set[str] = frozenset()) -> list[str]:
    """``count`` LFW identities with at least ``min_images`` photos, drawn with ``seed`` (sorted)."""
    names = sorted(
        e.name for e in os.scandir(lfw_dir) if e.is_dir() and e.name not in exclude and len(os.listdir(e.path)) >= min_images
    )
    return sorted(random.Random(seed).sample(names, count))


def session_cache_dir(tmp_path_factory) -> Path:
    """The aligned-face cache folder the conftest gives tests (usable from module-scoped fixtures too)."""
    from privgan.faces.cache import default_cache_dir

    if "PRIVGAN_CACHE" in os.environ and os.environ.get("PRIVGAN_TEST_SHARED_CACHE") == "1":
        return default_cache_dir(112)
    return tmp_path_factory.getbasetemp() / "privgan_cache" / "aligned" / "v1-112"


def aligned_faces(
    lfw_dir: Path, names: list[str], per_identity: int, *, cache_dir: Path, size: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_identity`` aligned faces of each identity (float N x 3 x size x size in [0, 1]) and labels."""
    from privgan.faces.cache import align_files

    imgs, labels = [], []
    for k, name in enumerate(names):
        files = sorted((lfw_dir / name).iterdir())
        got: list[torch.Tensor] = []
        for start in range(0, len(files), per_identity):  # align only as many files as needed
            got += list(align_files(files[start : start + per_identity], cache_dir=cache_dir).images)
            if len(got) >= per_identity:
                break
        if len(got) < per_identity:
            raise RuntimeError(f"{name}: only {len(got)} aligned faces, {per_identity} needed")
        imgs.append(torch.stack(got[:per_identity]))
        labels += [k] * per_identity
    x = torch.cat(imgs).float() / 255
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return x, torch.tensor(labels)


def light_edits(x: torch.Tensor) -> torch.Tensor:
    """Three light edits of every image: horizontal flip, +8% brightness, 90% centre crop resized back."""
    s = x.shape[-1]
    c = max(1, round(s * 0.05))
    crop = F.interpolate(x[..., c : s - c, c : s - c], size=(s, s), mode="bilinear", align_corners=False)
    return torch.cat([x.flip(-1), (x * 1.08).clamp(0, 1), crop.clamp(0, 1)])


_PLANTED: dict[tuple[str, str], dict[str, torch.Tensor]] = {}


def planted_lfw(lfw_dir: Path, cache_dir: Path) -> dict[str, object]:
    """8 member identities (3 training + 3 reference photos each), 12 non-member identities
    (3 reference photos each) and 8 further identities (3 photos) for "other people", with
    SFace embeddings of the references and of two replaying "generators" (light edits of the
    members' training photos; light edits of the other people's photos); built once per process.
    """
    key = (str(lfw_dir), str(cache_dir))
    if key not in _PLANTED:
        from privgan.faces.embedders import embed_batched
        from privgan.faces.embedders import build_embedder

        with one_thread():
            names = lfw_identities(lfw_dir, min_images=6, count=20, seed=0)
            members, nonmembers = names[:8], names[8:]
            others = lfw_identities(lfw_dir, min_images=3, count=8, seed=1, exclude=set(names))
            xm, ym = aligned_faces(lfw_dir, members, 6, cache_dir=cache_dir)
            xn, yn = aligned_faces(lfw_dir, nonmembers, 3, cache_dir=cache_dir)
            xo, yo = aligned_faces(lfw_dir, others, 3, cache_dir=cache_dir)
            train = torch.arange(len(xm)) % 6 < 3
            embedder = build_embedder("sface")
            _PLANTED[key] = {
                "embedder": embedder,
                "members": members,
                "nonmembers": nonmembers,
                "train": xm[train],
                "train_labels": ym[train],
                "member_refs": xm[~train],
                "member_ref_labels": ym[~train],
                "member_ref_emb": embed_batched(embedder, xm[~train]),
                "nonmember_refs": xn,
                "nonmember_labels": yn,
                "nonmember_emb": embed_batched(embedder, xn),
                "others": xo,
                "replay": light_edits(xm[train]),
                "replay_emb": embed_batched(embedder, light_edits(xm[train])),
                "others_emb": embed_batched(embedder, light_edits(xo)),
            }
    return _PLANTED[key]
