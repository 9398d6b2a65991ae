"""Face detection (facenet-pytorch MTCNN) and 5-point similarity alignment to the ArcFace template."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from PIL import Image

#: The ArcFace / InsightFace 5-point template for a 112x112 crop, (x, y) pixels, in the order
#: left eye, right eye, nose tip, left mouth corner, right mouth corner ("left" = image left).
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

#: Bumped whenever alignment output changes, so cached crops from older code are not reused.
ALIGN_VERSION = "mtcnn-arcface5-v1"


def arcface_template(size: int = 112) -> np.ndarray:
    """The 5-point ArcFace template scaled to a ``size`` x ``size`` crop (same framing as 112)."""
    return ARCFACE_TEMPLATE_112 * (size / 112.0)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) mapping ``src`` to ``dst`` (Umeyama); 2x3."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching K x 2 point sets (K >= 2), got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = (s0**2).sum() / len(src)
    scale = (sig * d).sum() / var_s if var_s > 0 else 1.0
    shift = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, shift[:, None]])


def warp_to_template(image: np.ndarray, landmarks: np.ndarray, *, size: int = 112) -> np.ndarray:
    """Warp an H x W x 3 image so its 5 landmarks land on the ArcFace template; size x size x 3."""
    m = similarity_transform(np.asarray(landmarks).reshape(5, 2), arcface_template(size))
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def _load_mtcnn() -> Any:
    try:
        from facenet_pytorch import MTCNN
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "privgan.faces.FaceAligner needs facenet-pytorch (MTCNN weights ship in its wheel): "
            "pip install --no-deps facenet-pytorch==2.6.0"
        ) from e
    return MTCNN


class FaceAligner:
    """Detects faces with MTCNN, keeps the most central confident one and warps it to the ArcFace template."""

    def __init__(self, *, size: int = 112, min_prob: float = 0.95, device: Any = "cpu") -> None:
        if size < 16:
            raise ValueError(f"size must be >= 16 pixels, got {size}")
        if not 0.0 <= min_prob <= 1.0:
            raise ValueError(f"min_prob must be in [0, 1], got {min_prob}")
        self.size = size
        self.min_prob = min_prob
        self.device = device
        self._mtcnn: Any = None

    @property
    def version(self) -> str:
        """Identifies everything that changes the output (used as part of cache keys)."""
        return f"{ALIGN_VERSION}-s{self.size}-p{self.min_prob:g}"

    @property
    def mtcnn(self) -> Any:
        """The facenet-pytorch MTCNN detector, built on first use."""
        if self._mtcnn is None:
            mtcnn_cls = _load_mtcnn()
            self._mtcnn = mtcnn_cls(keep_all=True, select_largest=False, device=self.device)
        return self._mtcnn

    def _pick(self, shape: tuple[int, int], boxes: Any, probs: Any, points: Any) -> np.ndarray | None:
        """Landmarks of the confident face whose box centre is closest to the image centre."""
        if boxes is None or points is None:
            return None
        boxes = np.asarray(boxes, dtype=np.float64)
        probs = np.asarray(probs, dtype=np.float64)
        points = np.asarray(points, dtype=np.float64)
        ok = probs >= self.min_prob
        if not ok.any():
            return None
        h, w = shape
        centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
        dist = np.hypot(centres[:, 0] - w / 2, centres[:, 1] - h / 2)
        dist[~ok] = np.inf
        return points[int(np.argmin(dist))].reshape(5, 2)

    def landmarks(self, img: Image.Image) -> np.ndarray | None:
        """5 x 2 landmarks (x, y) of the chosen face, or None when no face passes ``min_prob``."""
        rgb = img.convert("RGB")
        boxes, probs, points = self.mtcnn.detect(rgb, landmarks=True)
        return self._pick((rgb.height, rgb.width), boxes, probs, points)

    def align(self, img: Image.Image) -> np.ndarray | None:
        """Aligned size x size x 3 uint8 RGB crop of the most central face, or None if there is none."""
        rgb = img.convert("RGB")
        pts = self.landmarks(rgb)
        if pts is None:
            return None
        return warp_to_template(np.asarray(rgb), pts, size=self.size)

