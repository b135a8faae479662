"""Issue 12: a user's mistake is one line in our words (no OpenCV log lines, no torch warnings or
multi-line state_dict errors), and every command's human (non --json) output works."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
import torch
from helpers import make_prepared_dataset, write_low_clip
from typer.testing import CliRunner

from facenhance_cli.checkpoint import save_checkpoint
from facenhance_cli.cli import app
from facenhance_cli.config import load_preset
from facenhance_cli.nn.unet import build_network

SIZE = 32


class Foreign:
    """Any class: a pickle holding it is not loadable with weights_only."""


def cli(*args):
    """The installed entry point in a fresh process: what OpenCV and torch print to stderr is seen too."""
    return subprocess.run(
        [sys.executable, "-m", "facenhance_cli", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def only_line(proc) -> str:
    assert proc.stdout == "", proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture
def clip(tmp_path):
    return write_low_clip(tmp_path, 2, SIZE)


def test_broken_image_is_one_line_without_opencv_logs(clip):
    bad = clip / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nxxxxgarbage that is no IHDR chunk")
    config = load_preset("tiny").replace(**{"unet.image_size": SIZE, "sampling.steps": 1})
    model = save_checkpoint(clip / "m.pt", config, build_network(config).state_dict())
    proc = cli("enhance", clip / "in.mp4", "-i", bad, "-o", clip / "o.mp4", "-m", model)
    assert proc.returncode == 1
    assert only_line(proc) == f"error: cannot read image {bad}"


@pytest.mark.parametrize("kind", ["torch_pickle", "plain_pickle_protocol_4"])
def test_foreign_pickle_is_one_line_in_our_words(clip, kind):
    path = clip / "foreign.pt"
    if kind == "torch_pickle":
        torch.save({"model": Foreign()}, path)
    else:
        with open(path, "wb") as f:
            pickle.dump({"model": Foreign()}, f, protocol=4)  # torch warns about the protocol
    proc = cli("enhance", clip / "in.mp4", "-i", clip / "id.png", "-o", clip / "o.mp4", "-m", path)
    assert proc.returncode == 1
    line = only_line(proc)
    assert line.startswith(f"error: {path} is not a facenhance checkpoint (")
    assert line.endswith(")") and "weights_only" not in line and "UserWarning" not in proc.stderr


def test_missing_tensors_are_counted_and_named(clip):
    config = load_preset("tiny").replace(**{"unet.image_size": SIZE})
    state = build_network(config).state_dict()
    dropped = sorted(state)[:4]
    for key in dropped:
        del state[key]
    model = save_checkpoint(clip / "m.pt", config, state)
    proc = cli("enhance", clip / "in.mp4", "-i", clip / "id.png", "-o", clip / "o.mp4", "-m", model)
    assert proc.returncode == 1
    assert only_line(proc) == f"error: {model}: checkpoint is missing 4 tensors: {', '.join(dropped)}"


def test_wrongly_shaped_tensors_are_one_line(tmp_path):
    from facenhance_cli.checkpoint import load_for_inference
    from facenhance_cli.errors import CheckpointError

    config = load_preset("tiny").replace(**{"unet.image_size": SIZE})
    state = build_network(config).state_dict()
    key = next(k for k, v in state.items() if v.ndim == 4)
    state[key] = torch.zeros(1, 1, 1, 1)
    model = save_checkpoint(tmp_path / "m.pt", config, state)
    with pytest.raises(CheckpointError, match="1 tensors have the wrong shape") as info:
        load_for_inference(model)
    assert "\n" not in str(info.value)


# -- every command's human output ------------------------------------------------------------------------

runner = CliRunner()


def test_presets_table():
    result = runner.invoke(app, ["presets"])
    assert result.exit_code == 0, result.output
    for name in ("paper", "small", "tiny", "GFLOP/call"):
        assert name in result.output


def test_models_table_and_empty_folder(tmp_path, monkeypatch):
    config = load_preset("tiny")
    save_checkpoint(
        tmp_path / "mine.pt", config, build_network(config).state_dict(), meta={"trained_on": "x"}
    )
    (tmp_path / "broken.pt").write_text("nope")
    result = runner.invoke(app, ["models", "--models-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "mine" in result.output and "broken" in result.output and "tiny" in result.output


def test_eval_table(tmp_path):
    data = make_prepared_dataset(tmp_path / "data", n_train=0, n_test=2, n_frames=3, size=SIZE)
    result = runner.invoke(
        app,
        [
            "eval",
            str(data),
            "--gt",
            str(data),
            "--metrics",
            "psnr,ssim",
            "--baseline",
            "identity",
            "--no-cache",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "facenhance eval: 2 videos" in result.output and "mean: identity" in result.output


def test_train_summary_line(tmp_path):
    data = make_prepared_dataset(tmp_path / "data", n_train=1, n_test=0, n_frames=2, size=SIZE)
    result = runner.invoke(
        app,
        ["train", str(data), "-o", str(tmp_path / "run"), "--preset", "tiny", "--device", "cpu",
         "--set", f"unet.image_size={SIZE}", "--batch-size", "1", "--max-steps", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "trained 1 steps to step 1" in result.output


def test_presets_json_and_table_agree():
    rows = json.loads(runner.invoke(app, ["presets", "--json"]).output)
    table = runner.invoke(app, ["presets"]).output
    for row in rows:
        assert f"{row['sampler']} {row['steps']}" in table
