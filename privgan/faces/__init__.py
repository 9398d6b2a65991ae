"""Face preprocessing (``load_aligned``: align auto | mtcnn | none, one named resizer), identity embedders, LFW verification."""

from privgan.faces.align import FaceAligner
from privgan.faces.cache import AlignedFaces, align_files
from privgan.faces.embedders import available_embedders, build_embedder, register_embedder
from privgan.faces.lfw import LfwResult, Pair, evaluate_lfw, read_pairs
from privgan.faces.preprocess import ALIGN_METHODS, MIN_FACE_PROB, RESIZE_METHOD, load_aligned, resize_faces

__all__ = [
    "ALIGN_METHODS",
    "AlignedFaces",
    "FaceAligner",
    "LfwResult",
    "MIN_FACE_PROB",
    "Pair",
    "RESIZE_METHOD",
    "align_files",
    "available_embedders",
    "build_embedder",
    "evaluate_lfw",
    "load_aligned",
    "read_pairs",
    "register_embedder",
    "resize_faces",
]
