"""What every split-inversion attack shares: the Reconstructions it returns, the feature loss, and the client's attack mode.

Kept apart from the attacks themselves (``inversion``, ``prior_inversion``) so each imports it without importing the other.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from privgan.metrics.image_quality import psnr_db, ssim

Client = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Reconstructions:
    """Images an inversion attack rebuilt, with the originals (if known) to score them against."""

    originals: Tensor | None
    reconstructions: Tensor
    attack: str
    feature_loss: Tensor
    seconds: float
    converged: bool = True
    curve: tuple[float, ...] = ()

    def metrics(self) -> dict[str, float]:
        """Mean and median per-image PSNR (dB) and SSIM against the originals, and mean feature loss.

        SSIM uses an 11 x 11 Gaussian window (sigma 1.5), shrunk to the largest odd size that
        fits for images smaller than 11 pixels.
        """
        if self.originals is None:
            raise ValueError("metrics need the originals; pass originals= to the attack")
        x, y = self.originals.detach().float().cpu(), self.reconstructions.detach().float().cpu()
        side = min(x.shape[-2:])
        window = min(11, side if side % 2 else side - 1)
        p = psnr_db(y, x)
        s = ssim(y, x, window_size=window)
        return {
            "psnr_db": float(p.mean()),
            "psnr_db_median": float(p.median()),
            "ssim": float(s.mean()),
            "ssim_median": float(s.median()),
            "feature_loss": float(self.feature_loss.detach().float().mean()),
        }


def normalised_feature_loss(pred: Tensor, observed: Tensor) -> Tensor:
    """Per-sample MSE between features divided by the observed features' mean energy (N).

    Dividing by mean(observed**2) makes the loss scale independent of the split depth (and of
    the client's feature scale), so one learning rate and TV weight work for every cut.
    """
    err = (pred - observed).flatten(1).pow(2).mean(1)
    energy = observed.detach().flatten(1).pow(2).mean(1).clamp_min(1e-12)
    return err / energy


def total_variation(x: Tensor) -> Tensor:
    """Per-image anisotropic L1 total variation (N): mean |vertical| + mean |horizontal| differences."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def _client_modules(client: Client) -> list[nn.Module]:
    """The nn.Module behind ``client``: itself, or the owner of a bound method like ``model.client``."""
    if isinstance(client, nn.Module):
        return [client]
    owner = getattr(client, "__self__", None)
    return [owner] if isinstance(owner, nn.Module) else []


@contextlib.contextmanager
def _attack_mode(client: Client) -> Iterator[None]:
    """Eval mode and frozen parameters for the client while attacking; every flag restored after."""
    modules = _client_modules(client)
    modes = [(m, m.training) for root in modules for m in root.modules()]
    params = [(p, p.requires_grad) for root in modules for p in root.parameters()]
    try:
        for root in modules:
            root.eval()
        for p, _ in params:
            p.requires_grad_(False)
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p, requires_grad in params:
            p.requires_grad_(requires_grad)


def _grad_wrt(loss: Tensor, x: Tensor) -> Tensor:
    """d loss / d x only (no .grad written anywhere else); zeros when x does not reach the loss."""
    if not loss.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(loss, [x], allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def _check_images(images: Tensor, image_shape: tuple[int, ...], what: str) -> None:
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(f"{what} must be N x {tuple(image_shape)}, got {tuple(images.shape)}")


def plateaued(losses: list[float] | tuple[float, ...], *, tolerance: float) -> bool:
    """Whether the last losses fell by less than ``tolerance`` (relative) from first to last: training has levelled off."""
    if len(losses) < 2:
        return False
    first, last = losses[0], losses[-1]
    return math.isfinite(last) and (first - last) <= tolerance * max(abs(first), 1e-12)


def cosine_lr(opt: torch.optim.Optimizer, lr: float, t: int, steps: int) -> None:
    """Set every group's learning rate to ``lr`` cosine-annealed to ~0 over ``steps`` (step ``t``)."""
    for group in opt.param_groups:
        group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * t / steps))


def keep_best(best_x: Tensor, best_loss: Tensor, x: Tensor, loss: Tensor, first: bool) -> tuple[Tensor, Tensor]:
    """Per sample, the restart with the lower feature loss (the first restart always counts): (images, losses)."""
    loss = torch.nan_to_num(loss.to(best_loss.dtype), nan=math.inf)
    better = (loss < best_loss) | first
    return torch.where(better.view(-1, 1, 1, 1), x.to(best_x.dtype), best_x), torch.where(better, loss, best_loss)
