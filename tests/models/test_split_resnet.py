"""The split network: client + server = whole model, every split point, clear errors."""

import pytest
import torch

from privgan.models.split_resnet import SplitResNet


@pytest.mark.parametrize("split", SplitResNet.SPLIT_POINTS)
def test_client_then_server_equals_forward(split):
    torch.manual_seed(0)
    net = SplitResNet(num_classes=5, width=8, split_at=split).eval()
    x = torch.rand(2, 3, 32, 32)
    z = net.client(x)
    assert torch.allclose(net.server(z), net(x), atol=1e-6)
    depth = SplitResNet.SPLIT_POINTS.index(split)
    assert z.shape[-1] == 32 // 2**depth


def test_unknown_split_lists_valid_points():
    with pytest.raises(ValueError, match="stem, stage1, stage2, stage3, stage4"):
        SplitResNet(num_classes=2, split_at="stage9")


def test_unknown_norm():
    with pytest.raises(ValueError, match="norm"):
        SplitResNet(num_classes=2, norm="layer")
