"""Fréchet distance against hand-computed values; fd_face offline with SFace; Inception's missing-weights error."""

import numpy as np
import pytest
import torch

from privgan.metrics.frechet import fd_face, frechet_distance, inception_fd
from privgan.paths import MissingDataError


def gaussian_with_exact_moments(n: int, mu: np.ndarray, var: np.ndarray, seed: int) -> np.ndarray:
    """n points whose sample mean is exactly ``mu`` and sample covariance (ddof=1) exactly diag(``var``)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, len(mu)))
    x -= x.mean(0)
    chol = np.linalg.cholesky(np.cov(x, rowvar=False))
    x = x @ np.linalg.inv(chol).T  # sample covariance is now the identity
    return x * np.sqrt(var) + mu


def test_matches_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 0.25, 2.0]), np.array([9.0, 1.0, 0.25, 0.5])
    a = gaussian_with_exact_moments(200, mu1, s1, 0)
    b = gaussian_with_exact_moments(300, mu2, s2, 1)
    expect = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert expect == pytest.approx(4 + 1 + 0.25 + (4 + 1 + 0 + 0.5))  # hand arithmetic of the formula
    assert frechet_distance(a, b) == pytest.approx(expect, rel=1e-9)
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(expect, rel=1e-9)


def test_identical_sets_are_at_zero_and_distance_is_symmetric():
    a = gaussian_with_exact_moments(50, np.zeros(3), np.ones(3), 2)
    b = gaussian_with_exact_moments(80, np.ones(3), np.array([2.0, 3.0, 4.0]), 3)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_fewer_samples_than_dimensions_stays_finite():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((10, 64)), rng.standard_normal((12, 64)) + 3
    fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 64 * 9 * 0.5  # the mean shift alone is 64 * 9


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_inception_without_weights_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    x = torch.rand(4, 3, 32, 32)
    with pytest.raises(MissingDataError, match="weights_path="):
        inception_fd(x, x)
    with pytest.raises(MissingDataError, match="not found"):
        inception_fd(x, x, weights_path=tmp_path / "missing.pth")


def test_fd_face_runs_offline_and_orders_sets():
    """Faces vs their own flips is closer than faces vs noise (SFace embeddings, no network)."""
    from privgan.faces.embedders import build_embedder

    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(12, 3, 4, 4, generator=g), size=(32, 32), mode="bilinear")
    noise = torch.rand(12, 3, 32, 32, generator=g)
    emb = build_embedder("sface")
    near = fd_face(smooth, smooth.flip(-1), emb)
    far = fd_face(smooth, noise, emb)
    assert np.isfinite(near) and near < far
