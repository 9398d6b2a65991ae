"""``privgan faces eval-lfw``: --embedder-path (alias --model-path), clear errors instead of tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from privgan.cli import cmd_faces
from privgan.paths import data_root, lfw_root

MOBILEFACENET = data_root() / "models" / "mobilefacenet" / "MobileFaceNet.onnx"


def test_onnx_without_a_model_file_is_a_clear_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cmd_faces(["eval-lfw", "--embedder", "onnx", "--max-pairs", "20"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--embedder onnx needs --embedder-path" in err and "Traceback" not in err


@pytest.mark.parametrize("flag", ["--embedder-path", "--model-path"])
def test_a_missing_model_file_is_a_message_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    missing = tmp_path / "nowhere.onnx"
    assert cmd_faces(["eval-lfw", "--embedder", "onnx", flag, str(missing), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("privgan faces eval-lfw:") and "nowhere.onnx" in err


@pytest.mark.lfw
def test_eval_lfw_with_an_onnx_embedder_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not MOBILEFACENET.is_file() or not (lfw_root() / "pairs.txt").is_file():
        pytest.skip(f"needs {MOBILEFACENET} and LFW pairs.txt under $PRIVGAN_DATA")
    rc = cmd_faces(["eval-lfw", "--embedder", "onnx", "--embedder-path", str(MOBILEFACENET), "--max-pairs", "20",
                    "--out", str(tmp_path)])
    assert rc == 0 and (tmp_path / "lfw_onnx.json").is_file()
    assert "LFW verification with embedder 'onnx' on 20 pairs" in capsys.readouterr().out
