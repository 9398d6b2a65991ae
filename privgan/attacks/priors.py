"""Face priors for inversion attacks: a generator z -> face the attacker searches instead of raw pixels.

The attacker's prior must know no one of the study: a GAN trained on public people only (privgan's
own ``recipes/gan_lfw_public.yaml`` trains one), or any exported face generator. ``load_face_prior``
reads a privgan GAN checkpoint (its EMA generator, without Lightning), a ``GAN.export_generator``
file (torch.export ``.pt2`` or TorchScript); ``linear_prior`` builds an eigenface prior from the
attacker's own auxiliary photos (cheap, and a planted truth for the search itself).
"""

from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

Decode = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class FacePrior:
    """A differentiable face generator: ``decode(z)`` maps N x ``latent_dim`` codes to N x 3 x S x S images in [0, 1]."""

    decode: Decode
    latent_dim: int
    image_size: int
    source: str
    modules: tuple[nn.Module, ...] = ()

    def __call__(self, z: Tensor) -> Tensor:
        return self.decode(z)

    def frozen(self) -> FacePrior:
        """The prior in eval mode with its weights frozen (the attack only moves the codes)."""
        for m in self.modules:
            m.eval().requires_grad_(False)
        return self


def _gan_checkpoint_prior(path: Path, device: torch.device) -> FacePrior:
    """The EMA generator of a privgan GAN checkpoint, rebuilt from its hyper-parameters (no Lightning import)."""
    from privgan.models.gan import Generator

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - name the file and what was expected
        raise ValueError(f"prior {str(path)!r}: not a readable checkpoint ({type(e).__name__}); pass a privgan GAN .ckpt "
                         "or a GAN.export_generator file") from e
    hp, state = ckpt.get("hyper_parameters") or {}, ckpt.get("state_dict") or {}
    prefix = "generator_ema."
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not weights or "latent_dim" not in hp:
        raise ValueError(f"prior {str(path)!r}: not a privgan GAN checkpoint (no generator_ema weights or latent_dim); "
                         "pass a GAN .ckpt, a GAN.export_generator file, or build one with linear_prior")
    g = Generator(image_size=int(hp["image_size"]), latent_dim=int(hp["latent_dim"]), width=int(hp.get("g_width", 64)),
                  norm=str(hp.get("g_norm", "batch")))
    g.load_state_dict(weights)
    g = g.to(device)
    return FacePrior(lambda z: ((g(z) + 1) * 0.5).clamp(0, 1), int(hp["latent_dim"]), int(hp["image_size"]),
                     f"privgan GAN checkpoint {path}", (g,))


def load_exported_generator(path: Path, *, label: str = "prior") -> tuple[Callable | None, int, int]:
    """A ``GAN.export_generator`` file: a torch.export program (sizes in its ``privgan.json`` extra file) or a TorchScript
    module with ``latent_dim`` / ``image_size`` attributes, with its sizes; (None, 0, 0) when the file is neither."""
    try:
        names = zipfile.ZipFile(path).namelist() if zipfile.is_zipfile(path) else []
    except (OSError, zipfile.BadZipFile):
        names = []
    if not names:
        return None, 0, 0
    try:
        if not any(n.endswith("/archive_format") or n == "archive_format" for n in names):
            raise LookupError("not a torch.export archive")
        extra = {"privgan.json": ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(path), extra_files=extra)
        meta = json.loads(extra["privgan.json"] or "{}")
        if "latent_dim" not in meta or "image_size" not in meta:
            raise ValueError(f"{label} {str(path)!r}: a torch.export program without privgan's latent_dim / image_size "
                             "(export it with GAN.export_generator)")
        return program.module(), int(meta["latent_dim"]), int(meta["image_size"])
    except ValueError:
        raise
    except Exception:  # noqa: BLE001 - not a torch.export file: try TorchScript
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError):
        return None, 0, 0
    return scripted, int(scripted.latent_dim), int(scripted.image_size)


def _exported_prior(path: Path, device: torch.device) -> FacePrior:
    """A ``GAN.export_generator`` file as a prior (torch.export ``.pt2`` or TorchScript)."""
    module, dim, size = load_exported_generator(path)
    if module is None:
        raise ValueError(f"prior {str(path)!r}: neither a privgan GAN checkpoint (.ckpt) nor an exported generator")
    module = module.to(device)
    frozen = (module,) if isinstance(module, torch.jit.ScriptModule) else ()  # torch.export modules refuse .eval()
    return FacePrior(module, dim, size, f"exported generator {path}", frozen)


def load_face_prior(path: str | Path, device: str | torch.device = "cpu") -> FacePrior:
    """The face prior in ``path``: a privgan GAN ``.ckpt`` or a ``GAN.export_generator`` file (``.pt2`` / TorchScript)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"prior {str(p)!r}: no such file (train one with privgan fit --config recipes/gan_lfw.yaml "
                                "--config recipes/gan_lfw_public.yaml and pass its checkpoints/last.ckpt)")
    device = torch.device(device)
    prior = _gan_checkpoint_prior(p, device) if p.suffix == ".ckpt" else _exported_prior(p, device)
    return prior.frozen()


def linear_prior(images: Tensor, n_components: int) -> FacePrior:
    """An eigenface prior from the attacker's photos: mean + z · (principal directions scaled by their spread), z ~ N(0, I)."""
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"images must be N x 3 x S x S, got {tuple(images.shape)}")
    x = images.detach().float().flatten(1)
    k = min(n_components, len(x) - 1)
    if k < 1:
        raise ValueError("linear_prior needs at least two photos")
    mean = x.mean(0)
    _, s, v = torch.linalg.svd(x - mean, full_matrices=False)
    basis = (s[:k, None] / (len(x) - 1) ** 0.5) * v[:k]
    shape = images.shape[1:]
    return FacePrior(lambda z: (mean + z @ basis).clamp(0, 1).view(-1, *shape), k, int(images.shape[-1]),
                     f"eigenfaces of {len(x)} photos ({k} components)")
