"""Identity embedders: registry, errors, and real models separating real LFW identities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from privgan.faces.cache import align_files
from privgan.faces.embedders import available_embedders, build_embedder, register_embedder
from privgan.metrics.roc import auc_score
from privgan.paths import MissingDataError, data_root, lfw_root
from privgan.faces.embedders import IdentityEmbedder

LFW_IMAGES = lfw_root() / "images_deepfunneled"
MOBILEFACENET = data_root() / "models" / "mobilefacenet" / "MobileFaceNet.onnx"
needs_lfw = pytest.mark.skipif(
    not LFW_IMAGES.is_dir(),
    reason=f"LFW images not found at {LFW_IMAGES} (set PRIVGAN_DATA to the folder holding datasets/)",
)
IDENTITIES = ("George_W_Bush", "Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder")


def _kwargs(name: str) -> dict:
    if name == "onnx":
        if not MOBILEFACENET.is_file():
            pytest.skip(f"MobileFaceNet ONNX not found at {MOBILEFACENET}")
        return {"model_path": MOBILEFACENET}
    return {}


@pytest.fixture(scope="module")
def lfw_faces(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.Tensor, np.ndarray]:
    """20 aligned LFW crops (4 of each of 5 people) as float [0, 1], with their identity labels."""
    if not LFW_IMAGES.is_dir():
        pytest.skip(f"LFW images not found at {LFW_IMAGES}")
    files = [f for n in IDENTITIES for f in sorted((LFW_IMAGES / n).glob("*.jpg"))[:4]]
    aligned = align_files(files, cache_dir=tmp_path_factory.mktemp("aligned"))
    assert len(aligned.paths) == 20, aligned.summary()
    return aligned.images.float() / 255.0, np.array([p.parent.name for p in aligned.paths])


def test_registry_lists_names_and_rejects_unknown_ones() -> None:
    assert {"sface", "onnx", "facenet"} <= set(available_embedders())
    with pytest.raises(ValueError, match="unknown embedder 'nope'.*facenet.*onnx.*sface"):
        build_embedder("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_embedder("sface")(object)


def test_onnx_needs_an_existing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model_path"):
        build_embedder("onnx")
    missing = tmp_path / "nowhere" / "arcface.onnx"
    with pytest.raises(MissingDataError, match="arcface.onnx"):
        build_embedder("onnx", model_path=missing)


@pytest.mark.lfw
@needs_lfw
@pytest.mark.parametrize("name", ["sface", "onnx"])
def test_same_identity_scores_clearly_above_different_identity(
    name: str, lfw_faces: tuple[torch.Tensor, np.ndarray]
) -> None:
    faces, ids = lfw_faces
    emb = build_embedder(name, **_kwargs(name))
    assert isinstance(emb, IdentityEmbedder) and emb.name == name
    z = emb.embed(faces)
    assert z.shape == (20, 128) and z.dtype == torch.float32
    torch.testing.assert_close(z.norm(dim=1), torch.ones(20))
    cos = (z @ z.T).numpy()
    same = ids[:, None] == ids[None, :]
    upper = np.triu(np.ones_like(same), k=1).astype(bool)
    s, d = cos[same & upper], cos[~same & upper]
    # measured: sface 0.72 vs 0.12, MobileFaceNet 0.65 vs 0.05 (same vs different, mean cosine)
    assert s.mean() > d.mean() + 0.4, (s.mean(), d.mean())
    assert auc_score(np.r_[s, d], np.r_[np.ones(len(s)), np.zeros(len(d))]) > 0.98
    # any input size works (resized to 112 inside) and gives nearly the same embedding
    z160 = emb.embed(F.interpolate(faces[:4], size=160, mode="bilinear", align_corners=False))
    assert (z[:4] * z160).sum(1).min() > 0.95
    assert emb.embed(faces[:0]).shape == (0, 128)


def test_embed_rejects_uint8_and_wrong_shapes() -> None:
    emb = build_embedder("sface")
    with pytest.raises(ValueError, match="float"):
        emb.embed(torch.zeros(1, 3, 112, 112, dtype=torch.uint8))
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        emb.embed(torch.zeros(3, 112, 112))


def test_facenet_loads_a_state_dict_file(tmp_path: Path) -> None:
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    weights = tmp_path / "facenet.pt"
    # published facenet files carry a classifier head ("logits.*"): it must be ignored
    torch.save(InceptionResnetV1(classify=True, num_classes=7).state_dict(), weights)
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    emb = build_embedder("facenet", weights_path=weights)
    torch.testing.assert_close(torch.rand(3), expected)  # building it leaves the caller's random stream alone
    faces = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    z = emb.embed(faces)
    assert z.shape == (2, 512)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2))
    with pytest.raises(MissingDataError, match="missing.pt"):
        build_embedder("facenet", weights_path=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="exactly one"):
        build_embedder("facenet")


def test_facenet_pretrained_download_failure_says_to_pass_weights_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached download to fall back on
    try:
        build_embedder("facenet", pretrained="vggface2")
    except RuntimeError as e:
        assert "weights_path" in str(e) and "vggface2" in str(e)
    else:
        pytest.skip("facenet weights downloaded: this machine has internet, the offline error is not reachable")
