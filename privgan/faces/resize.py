"""The one resizer privgan uses for faces, named like clean-fid names its resizers (the choice changes the numbers)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: The one resizer: torch bilinear interpolation, antialiased, ``align_corners=False``, clamped to [0, 1].
RESIZE_METHOD = "torch-bilinear-antialias"


def resize_faces(x: torch.Tensor, size: int) -> torch.Tensor:
    """N x 3 x H x W float images in [0, 1] at ``size`` x ``size`` by ``RESIZE_METHOD``; unchanged when already that size."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
