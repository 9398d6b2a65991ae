"""Small ResNet-style identity classifier that can be cut after any stage for split computing."""

from __future__ import annotations

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'group', 'batch' or 'none', got {kind!r}")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (projection when shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = _norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = _norm(norm, cout)
        self.act = nn.ReLU()
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(norm, cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.n1(self.conv1(x)))
        y = self.n2(self.conv2(y))
        return self.act(y + self.skip(x))


class SplitResNet(nn.Module):
    """Stem + 4 stages (each halves the resolution) + linear head; ``split_at`` names the cut.

    Split points, in order: ``stem`` (full resolution), ``stage1`` .. ``stage4``. The client
    runs everything up to and including ``split_at``; the server runs the rest.
    """

    SPLIT_POINTS = ("stem", "stage1", "stage2", "stage3", "stage4")

    def __init__(
        self,
        *,
        num_classes: int,
        width: int = 32,
        split_at: str = "stage1",
        norm: str = "group",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if split_at not in self.SPLIT_POINTS:
            raise ValueError(f"split_at={split_at!r} does not exist; valid split points: {', '.join(self.SPLIT_POINTS)}")
        for name, v in (("width", width), ("num_classes", num_classes), ("in_channels", in_channels)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"SplitResNet {name} must be an integer >= 1, got {v!r}")
        _norm(norm, 1)  # a bad norm is named before any layer is built
        self.split_at = split_at
        widths = [width, width * 2, width * 4, width * 8]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), _norm(norm, width), nn.ReLU())
        cin = width
        stages = []
        for w in widths:
            stages.append(BasicBlock(cin, w, 2, norm))
            cin = w
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def _parts(self) -> list[tuple[str, nn.Module]]:
        return [(n, getattr(self, n)) for n in self.SPLIT_POINTS] + [("head", self.head)]

    def client(self, x: torch.Tensor) -> torch.Tensor:
        """Device side: layers up to and including the split point."""
        for name, part in self._parts():
            x = part(x)
            if name == self.split_at:
                return x
        raise AssertionError("unreachable")

    def server(self, z: torch.Tensor) -> torch.Tensor:
        """Cloud side: the layers after the split point, ending in logits."""
        after = False
        for name, part in self._parts():
            if after:
                z = part(z)
            after = after or name == self.split_at
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.server(self.client(x))
