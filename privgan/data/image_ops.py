"""Small image operations on N x C x H x W tensors in [0, 1], shared by the planted edits, the copy detector and the release filter's views."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def luma(x: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W -> N x 1 x H x W grey levels (ITU-R 601 luma)."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def grey3(x: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W -> luma repeated in three channels (a grayscale photo in an RGB tensor)."""
    return luma(x).expand(-1, 3, -1, -1).contiguous()


def resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Antialiased bilinear resize (the project's resizer), clamped to [0, 1]."""
    return F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def crop_back(x: torch.Tensor, top: int, left: int, ch: int, cw: int) -> torch.Tensor:
    """The ch x cw window at (top, left), resized back to x's own size (x itself when the window is the whole image)."""
    h, w = x.shape[-2:]
    if (top, left, ch, cw) == (0, 0, h, w):
        return x
    return resize(x[..., top : top + ch, left : left + cw], h, w)


def rotate(x: torch.Tensor, degrees: float | torch.Tensor) -> torch.Tensor:
    """N x C x H x W rotated about the centre by ``degrees`` (one angle, or one per image); edge pixels fill the corners."""
    a = torch.as_tensor(degrees, dtype=torch.float32).expand(len(x)) * (math.pi / 180)
    cos, sin, zero = a.cos(), a.sin(), torch.zeros(len(x))
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
