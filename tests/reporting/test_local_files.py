"""Galleries stay readable: long captions never shrink the faces."""

import numpy as np
import torch
from PIL import Image

from privgan.reporting.local_files import image_grid


def test_gallery_faces_keep_their_size_under_long_captions(tmp_path):
    rows = [torch.rand(4, 3, 32, 32) for _ in range(5)]
    caption = "Fernando_Henrique_Cardoso (member) sim 0.41; closest refs 0.46, 0.41, 0.36 " * 2
    path = image_grid(rows, labels=[caption] * 5, path=tmp_path / "g.png")
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    painted = (img < 235).any(-1)  # not background: the faces (and a little text)
    cell = 1.1 * 100 * 0.96  # 1.1 in cells at 100 dpi
    assert painted.sum() >= 0.85 * 5 * 4 * cell * cell, (painted.sum(), img.shape)  # the 20 faces fill their cells
    assert img.shape[1] >= 4 * cell
