"""Face detection + alignment (MTCNN), identity embedders behind one interface, LFW verification."""

from privgan.faces.align import FaceAligner
from privgan.faces.cache import AlignedFaces, align_files
from privgan.faces.embedders import available_embedders, build_embedder, register_embedder
from privgan.faces.lfw import LfwResult, Pair, evaluate_lfw, read_pairs

__all__ = [
    "AlignedFaces",
    "FaceAligner",
    "LfwResult",
    "Pair",
    "align_files",
    "available_embedders",
    "build_embedder",
    "evaluate_lfw",
    "read_pairs",
    "register_embedder",
]
