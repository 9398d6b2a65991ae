"""LFW pairs protocol: parsing, the metrics against hand-computed values, and a real SFace run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from privgan.faces.embedders import build_embedder
from privgan.faces.lfw import (
    best_threshold,
    eval_lfw_main,
    evaluate_lfw,
    kfold_accuracy,
    read_pairs,
    subsample_pairs,
    tar_at_far,
)
from privgan.paths import MissingDataError, lfw_root

LFW = lfw_root()
needs_lfw = pytest.mark.skipif(
    not (LFW / "images_deepfunneled").is_dir() or not (LFW / "pairs.txt").is_file(),
    reason=f"LFW (images_deepfunneled/, pairs.txt) not found at {LFW} "
    "(set PRIVGAN_DATA to the folder holding datasets/)",
)


@pytest.fixture(scope="module")
def privgan_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PRIVGAN_CACHE shared by this module's LFW runs, so each image is aligned once."""
    return tmp_path_factory.mktemp("privgan_cache")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "pairs.txt"
    p.write_text(text)
    return p


def test_read_pairs_small_file(tmp_path: Path) -> None:
    p = write(tmp_path, "2\t1\nAnn\t1\t2\nAnn\t1\tBob\t3\nCid\t2\t4\nBob\t1\tCid\t1\n\n")
    pairs = read_pairs(p)
    assert [(q.name1, q.n1, q.name2, q.n2, q.same, q.fold, q.line) for q in pairs] == [
        ("Ann", 1, "Ann", 2, True, 0, 2),
        ("Ann", 1, "Bob", 3, False, 0, 3),
        ("Cid", 2, "Cid", 4, True, 1, 4),
        ("Bob", 1, "Cid", 1, False, 1, 5),
    ]
    assert pairs[1].files(Path("/x")) == (Path("/x/Ann/Ann_0001.jpg"), Path("/x/Bob/Bob_0003.jpg"))


@pytest.mark.parametrize(
    "text, match",
    [
        ("1 1\nAnn 1 2\nAnn 1 Bob\n", r"pairs\.txt:3: expected a mismatched pair"),
        ("1 1\nAnn 1 Bob 2\nAnn 1 Bob 1\n", r"pairs\.txt:2: expected a matched pair"),
        ("1 1\nAnn 1 x\nAnn 1 Bob 1\n", r"pairs\.txt:2: 'x' is not a positive image number"),
        ("1 2\nAnn 1 2\nAnn 1 Bob 1\n", r"announces 4 pair lines, found 2"),
        ("ten 300\n", r"pairs\.txt:1: expected a header"),
        ("", r"pairs\.txt:1: empty"),
    ],
)
def test_read_pairs_errors_name_file_and_line(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        read_pairs(write(tmp_path, text))


def test_missing_inputs_raise_missing_data_error(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="nowhere.txt"):
        read_pairs(tmp_path / "nowhere.txt")
    with pytest.raises(MissingDataError, match="LFW"):
        evaluate_lfw(build_embedder("sface"), lfw_dir=tmp_path / "no_lfw")


def test_threshold_accuracy_and_tar_against_hand_computed_values() -> None:
    scores = np.array([0.9, 0.8, 0.3, 0.2])
    labels = np.array([1, 1, 0, 0])
    assert best_threshold(scores, labels) == pytest.approx(0.55)
    # fold 0 = first two pairs; each fold's threshold comes from the other fold only
    s = np.array([0.9, 0.1, 0.7, 0.4])
    y = np.array([1, 0, 1, 0])
    accs, thrs = kfold_accuracy(s, y, np.array([0, 0, 1, 1]))
    assert thrs == pytest.approx([0.55, 0.5]) and accs == [1.0, 1.0]
    # no false accept allowed at FAR=1e-3 with 2 negatives: threshold 0.9 accepts one of two positives
    tar, thr = tar_at_far(np.array([0.9, 0.5, 0.6, 0.1]), np.array([1, 1, 0, 0]))
    assert (tar, thr) == (0.5, 0.9)
    # 1000 negatives: one false accept (FAR = 1e-3) is allowed, two are not
    neg = np.r_[0.95, 0.85, np.linspace(0, 0.5, 998)]
    tar, thr = tar_at_far(np.r_[0.99, 0.9, 0.8, neg], np.r_[np.ones(3), np.zeros(1000)])
    assert (tar, thr) == (pytest.approx(2 / 3), 0.9)


@pytest.mark.lfw
@needs_lfw
def test_real_pairs_file_and_balanced_subsample() -> None:
    pairs = read_pairs(LFW / "pairs.txt")
    assert len(pairs) == 6000 and sum(p.same for p in pairs) == 3000
    assert {p.fold for p in pairs} == set(range(10))
    sub = subsample_pairs(pairs, 60)
    assert len(sub) == 60 and sum(p.same for p in sub) == 30
    assert all(sum(p.fold == f for p in sub) == 6 for f in range(10))
    with pytest.raises(ValueError, match="too small"):
        subsample_pairs(pairs, 10)


@pytest.mark.lfw
@needs_lfw
def test_sface_on_60_lfw_pairs(tmp_path: Path, privgan_cache: Path) -> None:
    out = tmp_path / "out"
    cache = privgan_cache / "aligned" / "v1-112"
    r = evaluate_lfw(build_embedder("sface"), max_pairs=60, cache_dir=cache, out_dir=out)
    assert r.n_pairs == 60 and r.n_dropped_pairs == 0
    assert r.accuracy > 0.9 and r.auc > 0.95, r.summary()
    assert len(r.fold_accuracies) == 10
    data = json.loads((out / "lfw_sface.json").read_text())
    for key in ("accuracy", "accuracy_std", "auc", "tar_at_far_0.001", "threshold_at_far_0.001", "n_pairs",
                "n_fallback_pairs", "n_dropped_pairs", "scores", "labels", "folds"):
        assert key in data, key
    assert len(data["scores"]) == 60 and sum(data["labels"]) == 30
    np.testing.assert_allclose(data["scores"], r.scores)
    assert data["accuracy"] == r.accuracy
    assert "scores" not in r.to_dict(include_scores=False)


@pytest.mark.lfw
@needs_lfw
def test_eval_lfw_main_prints_summary_and_writes_json(
    tmp_path: Path, privgan_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRIVGAN_CACHE", str(privgan_cache))
    r = eval_lfw_main("sface", tmp_path / "out", 20, None)
    printed = capsys.readouterr().out
    assert "LFW verification with embedder 'sface' on 20 pairs" in printed
    assert (tmp_path / "out" / "lfw_sface.json").is_file() and r.n_pairs == 20
    assert (privgan_cache / "aligned" / "v1-112").is_dir()
