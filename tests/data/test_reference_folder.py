"""ReferenceFolder reads photos through the one face preprocessing (load_aligned)."""

import pytest
import torch
from PIL import Image

from privgan.data import ReferenceFolder


def test_align_names_the_method_and_false_still_means_none(tmp_path):
    (tmp_path / "members" / "a").mkdir(parents=True)
    Image.new("RGB", (20, 20), (0, 255, 0)).save(tmp_path / "members" / "a" / "x.png")
    (tmp_path / "members" / "a" / "broken.jpg").write_text("not an image")
    for align in ("none", False):
        refs = ReferenceFolder(tmp_path, image_size=8, align=align)
        assert refs.align == "none"
        x = refs.members().images
        assert x.shape == (1, 3, 8, 8) and torch.allclose(x[0, 1], torch.ones(8, 8))
        assert [k for k, v in refs.skipped.items() if v] == ["unreadable"]
    assert ReferenceFolder(tmp_path).align == ReferenceFolder(tmp_path, align=True).align == "mtcnn"
    with pytest.raises(ValueError, match="'mtcnn' or 'none'.*'auto'"):
        ReferenceFolder(tmp_path, align="auto")
