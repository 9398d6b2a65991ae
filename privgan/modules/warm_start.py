"""Start a model from another run's weights (public pretraining) and choose which parameters keep training."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn


class WarmStartError(ValueError):
    """A checkpoint does not fit the model (the message lists the keys), or a parameter selector matches nothing."""


def checkpoint_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The module state dict stored in a Lightning checkpoint (or a plain state-dict file)."""
    p = Path(path)
    if not p.is_file():
        raise WarmStartError(f"init_from: no checkpoint file {str(p)!r}")
    try:
        raw = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file: say which
        raise WarmStartError(f"init_from: cannot read {str(p)!r}: {type(e).__name__}: {e}") from e
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WarmStartError(f"init_from: {str(p)!r} holds no state dict (a Lightning .ckpt or a torch.save'd state_dict)")
    return state


def _strip(key: str) -> str:
    """Parameter names without Opacus's / DDP's wrapper prefixes, so DP and plain runs load each other."""
    for w in ("_module.", "module."):
        key = key.replace(w, "")
    return key


def load_weights(model: nn.Module, path: str | os.PathLike, *, exclude: Sequence[str] = (), key_prefix: str = "") -> list[str]:
    """Copy a checkpoint's weights into ``model``; keys starting with an ``exclude`` prefix are left as they are.

    ``key_prefix``: only the checkpoint's keys under it are used, without it (e.g. ``net.`` to load a
    LightningModule's ``net`` into a bare network built like it).

    Every other key must be in both with the same shape: otherwise a ``WarmStartError`` lists the
    missing, unexpected and mismatched keys (and suggests ``exclude``). Returns the keys loaded.
    """
    src = {_strip(k)[len(key_prefix):]: v for k, v in checkpoint_state(path).items() if _strip(k).startswith(key_prefix)}
    dst = {_strip(k): (k, v) for k, v in model.state_dict().items()}
    skip = lambda k: any(k.startswith(e) for e in exclude)  # noqa: E731
    missing = sorted(k for k in dst if k not in src and not skip(k))
    unexpected = sorted(k for k in src if k not in dst and not skip(k))
    mismatched = sorted(f"{k} {tuple(src[k].shape)} -> {tuple(dst[k][1].shape)}" for k in src
                        if k in dst and not skip(k) and src[k].shape != dst[k][1].shape)
    if missing or unexpected or mismatched:
        parts = [f"{name} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
                 for name, keys in (("missing in the checkpoint", missing), ("not in the model", unexpected),
                                    ("shape checkpoint -> model", mismatched)) if keys]
        raise WarmStartError(f"init_from {str(path)!r} does not fit {type(model).__name__}: " + "; ".join(parts)
                             + ". Same architecture settings (width, split_at, image size), or leave the differing part "
                             "out with init_exclude (e.g. the classifier head, whose size is the number of identities)")
    loaded = [k for k in dst if k in src and not skip(k)]
    with torch.no_grad():
        own = model.state_dict()
        for k in loaded:
            own[dst[k][0]].copy_(src[k])
    return loaded


def select_trainable(model: nn.Module, prefixes: Sequence[str] | None) -> list[str]:
    """Freeze every parameter whose name starts with none of ``prefixes`` (None: all train); returns the trainable names."""
    names = [n for n, _ in model.named_parameters()]
    if prefixes is None:
        return names
    unmatched = [p for p in prefixes if not any(_strip(n).startswith(p) for n in names)]
    if unmatched:
        tops = sorted({_strip(n).rsplit(".", 2)[0] for n in names})
        raise WarmStartError(f"trainable: {', '.join(unmatched)} match no parameter of {type(model).__name__}; "
                             f"parameter name prefixes: {', '.join(tops[:20])}")
    keep = []
    for n, p in model.named_parameters():
        p.requires_grad_(any(_strip(n).startswith(q) for q in prefixes))
        if p.requires_grad:
            keep.append(n)
    return keep
