"""Issue 12: help that does not mislead (no `<bool>` after flags, required options say so, README and
help agree), bf16 on the CPU, a clean package build config, and H.264 outputs that are reproducible."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_prepared_dataset, synthetic_clip
from typer.testing import CliRunner

from facenhance_cli.cli import app

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["prepare", "train", "enhance", "eval", "presets", "models", "export"]
runner = CliRunner()


@pytest.mark.parametrize("name", COMMANDS)
def test_flags_show_no_value_type(name):
    result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output


def test_enhance_help_says_identity_and_output_are_required():
    result = runner.invoke(app, ["enhance", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.split())
    assert re.search(r"--identity\s+-i\s+<path>\s+Required", text)
    assert re.search(r"--output\s+-o\s+<path>\s+Required", text)


def test_readme_and_help_agree_on_landmarks_and_preset_costs():
    from facenhance_cli.faces import LANDMARK_BACKENDS

    readme = (REPO / "README.md").read_text()
    documented = re.search(r"--landmarks ([a-z|-]+)\]", readme).group(1).split("|")
    assert sorted(documented) == sorted(LANDMARK_BACKENDS)
    help_text = " ".join(runner.invoke(app, ["prepare", "--help"], env={"COLUMNS": "200"}).output.split())
    for backend in LANDMARK_BACKENDS:
        assert backend in help_text
    table = runner.invoke(app, ["presets"]).output
    assert "GFLOP/call" in table and "| GFLOP/call |" in readme and "GFLOP / call" not in readme


def test_readme_metrics_are_accepted_by_eval():
    readme = (REPO / "README.md").read_text()
    listed = re.search(r"eval outdir/ --gt data/ \[--metrics ([a-z_,]+)\]", readme).group(1)
    from facenhance_cli.cli.evaluate import _metric_aliases
    from facenhance_cli.evaluation import METRICS, parse_names

    expected = {"lmk" if name == "expr" else name for name in listed.split(",")}  # expr comes with lmk
    assert set(parse_names(_metric_aliases(listed), METRICS, "metric")) == expected


def test_pyproject_has_an_spdx_license_and_lists_every_package():
    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert config["project"]["license"] == "MIT"
    floor = re.search(r"setuptools>=(\d+)", " ".join(config["build-system"]["requires"])).group(1)
    assert int(floor) >= 77  # SPDX license strings
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.relative_to(REPO).parts)
        for p in (REPO / "facenhance_cli").rglob("*")
        if p.is_dir() and p.name != "__pycache__"
    }
    found |= {"facenhance_cli"}
    found |= {
        "facenhance_cli.models." + ".".join(p.relative_to(REPO / "models").parts)
        for p in (REPO / "models").rglob("*")
        if p.is_dir()
    }
    assert found <= listed, found - listed


# -- bf16 autocast on the CPU -----------------------------------------------------------------------------


def test_enhance_and_train_take_bf16_on_the_cpu(tmp_path):
    from facenhance_cli.checkpoint import save_checkpoint
    from facenhance_cli.config import load_preset
    from facenhance_cli.nn.unet import build_network
    from facenhance_cli.video import read_video, write_image, write_video

    config = load_preset("tiny").replace(**{"unet.image_size": 32, "sampling.steps": 1})
    model = save_checkpoint(tmp_path / "m.pt", config, build_network(config).state_dict())
    _high, low, identity = synthetic_clip(2, size=32, low_size=64)
    write_video(tmp_path / "low.mp4", low, 25)
    write_image(tmp_path / "id.png", identity)
    result = runner.invoke(
        app,
        ["enhance", str(tmp_path / "low.mp4"), "-i", str(tmp_path / "id.png"), "-o", str(tmp_path / "o.mp4"),
         "-m", str(model), "--device", "cpu", "--precision", "bf16"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_video(tmp_path / "o.mp4")[0].shape == (2, 32, 32, 3)
    fp16 = runner.invoke(
        app,
        ["enhance", str(tmp_path / "low.mp4"), "-i", str(tmp_path / "id.png"), "-o", str(tmp_path / "p.mp4"),
         "-m", str(model), "--device", "cpu", "--precision", "fp16"],
    )  # fmt: skip
    assert fp16.exit_code == 2 and "fp16 needs a CUDA device" in fp16.output
    data = make_prepared_dataset(tmp_path / "data", n_train=1, n_test=0, n_frames=2, size=32)
    result = runner.invoke(
        app,
        ["train", str(data), "-o", str(tmp_path / "run"), "--preset", "tiny", "--device", "cpu", "-q",
         "--set", "unet.image_size=32", "--batch-size", "1", "--max-steps", "1", "--precision", "bf16"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "final.pt").is_file()


# -- reproducible H.264 -----------------------------------------------------------------------------------


def test_h264_output_is_byte_identical_and_single_threaded(tmp_path):
    """The same frames, encoded again and again, give the same bytes (x264's mb-tree lookahead did not)."""
    from facenhance_cli.video import write_video

    high, _low, _identity = synthetic_clip(16, size=192, seed=3)
    noise = np.random.default_rng(0).integers(-6, 7, high.shape)
    frames = np.clip(high.astype(int) + noise, 0, 255).astype(np.uint8)  # texture, so the encoder works
    written = []
    for i in range(6):
        write_video(tmp_path / f"{i}.mp4", frames, 25)
        written.append((tmp_path / f"{i}.mp4").read_bytes())
    assert all(w == written[0] for w in written)
    # x264 records its settings in the stream: one thread, no mb-tree
    assert b" threads=1 " in written[0] and b" mbtree=0 " in written[0]


def test_cli_choices_are_the_pipelines_choices():
    """The CLI's Enums (kept apart so --help imports nothing heavy) list exactly what the code accepts."""
    import typing

    from facenhance_cli import backends, config
    from facenhance_cli.cli import choices
    from facenhance_cli.faces import DETECTORS, LANDMARK_BACKENDS
    from facenhance_cli.prepare import LAYOUTS, LOW_ALIGNMENTS

    pairs = [
        (choices.Precision, typing.get_args(config.Precision)),
        (choices.Sampler, typing.get_args(config.SamplerName)),
        (choices.Spacing, typing.get_args(config.Spacing)),
        (choices.Backend, backends.BACKENDS),
        (choices.Layout, LAYOUTS),
        (choices.LowAlignment, LOW_ALIGNMENTS),
        (choices.Landmarks, LANDMARK_BACKENDS),
        (choices.Detector, DETECTORS),
    ]
    for enum, accepted in pairs:
        assert [member.value for member in enum] == list(accepted), enum
