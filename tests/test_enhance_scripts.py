"""Issue 12: what a batch script over many videos needs from `enhance`: warnings on stderr always,
--strict turns them into failures, a summary line that counts everything, and prepare's own layout
(clip folders, the prepared root, --pairs with outputs) as input."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from helpers import foreign_identity_case, make_prepared_dataset, save_tiny_model, synthetic_clip
from typer.testing import CliRunner

from facenhance_cli.cli import app
from facenhance_cli.video import probe_video, write_image, write_video

SIZE = 32


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), SIZE)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A good low video and the kinds of garbage a script may feed in."""
    root = tmp_path_factory.mktemp("videos")
    _high, low, identity = synthetic_clip(3, size=SIZE, low_size=64, seed=1)
    rng = np.random.default_rng(0)
    write_video(root / "good.mp4", low, 25)
    write_video(root / "noise.mp4", rng.integers(0, 256, low.shape, dtype=np.uint8), 25)
    write_video(root / "grey.mp4", np.full_like(low, 128), 25)
    gray = low.mean(axis=3, keepdims=True).astype(np.uint8).repeat(3, axis=3)
    write_video(root / "gray.mkv", gray, 25, lossless=True)
    write_image(root / "still.png", low[0])
    import cv2

    big = rng.integers(90, 200, low.shape, dtype=np.uint8)  # a face filling the frame, like prepare's
    mask = np.zeros((64, 64), np.uint8)
    cv2.ellipse(mask, (32, 32), (33, 36), 0, 0, 360, 1, -1)  # only the corners stay black (12 %)
    write_video(root / "bigface.mp4", big * mask[None, ..., None], 25)
    write_image(root / "id.png", identity)
    write_image(root / "blank_id.png", np.full_like(identity, 90))
    return root


def enhance(*args):
    return CliRunner().invoke(app, ["enhance", *map(str, args)])


@pytest.mark.parametrize(
    "name,identity,words",
    [
        ("noise.mp4", "id.png", "does not look like a face on black"),
        ("grey.mp4", "id.png", "the first frame is flat"),
        ("gray.mkv", "id.png", "is grayscale"),
        ("still.png", "id.png", "is a still image"),
        ("good.mp4", "blank_id.png", "identity image blank_id.png is flat"),
    ],
)
def test_a_suspicious_input_warns_in_a_script_and_fails_with_strict(
    model_path, videos, tmp_path, name, identity, words
):
    out = tmp_path / "o.mp4"
    result = enhance(
        videos / name, "-i", videos / identity, "-o", out, "-m", model_path
    )  # no terminal, no -v
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and words in result.output, result.output
    assert "1 warning)" in result.output and out.is_file()
    out.unlink()
    strict = enhance(videos / name, "-i", videos / identity, "-o", out, "-m", model_path, "--strict")
    assert strict.exit_code == 1
    lines = strict.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0] and "--strict" in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("name", ["good.mp4", "bigface.mp4"])
def test_a_good_video_gets_no_warning(model_path, videos, tmp_path, name):
    result = enhance(
        videos / name, "-i", videos / "id.png", "-o", tmp_path / "o.mp4", "-m", model_path, "--strict"
    )
    assert result.exit_code == 0 and "warning" not in result.output, result.output


@pytest.mark.slow
def test_the_summary_line_gives_the_runs_time_not_the_sum_of_the_videos(model_path, videos, tmp_path):
    """Three videos sharing network calls: the line had summed their overlapping times (30 s for a 10 s
    run); 40 steps make sampling outweigh the model load, so that sum would exceed the wall time."""
    args = [videos / "good.mp4", videos / "noise.mp4", videos / "gray.mkv", "-i", videos / "id.png"]
    started = time.perf_counter()
    result = enhance(*args, "-o", tmp_path / "out", "-m", model_path, "--batch-videos", "3", "--steps", "40")
    wall = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    summary = result.output.strip().splitlines()[-1]
    seconds = float(re.search(r"frames in ([0-9.]+) s\)", summary).group(1))
    assert 0 < seconds <= wall, (summary, wall)


def test_the_summary_line_counts_everything_and_a_skip_is_never_silent(model_path, videos, tmp_path):
    out = tmp_path / "out"
    args = [
        videos / "good.mp4",
        videos / "noise.mp4",
        videos / "gray.mkv",
        "-i",
        videos / "id.png",
        "-o",
        out,
        "-m",
        model_path,
    ]
    first = enhance(*args, "--quiet")
    assert first.exit_code == 0
    assert first.output.strip().splitlines()[-1].startswith("3 enhanced, 0 skipped, 2 warnings, 0 failed")
    (out / "gray.mp4").unlink()
    again = enhance(*args)
    assert again.exit_code == 0
    assert again.output.strip().splitlines()[-1].startswith("1 enhanced, 2 skipped, 1 warnings, 0 failed")
    strict = enhance(*args, "--overwrite", "--strict")
    assert strict.exit_code == 1
    assert "1 enhanced, 0 skipped, 0 warnings, 2 failed" in strict.output
    single = enhance(videos / "good.mp4", "-i", videos / "id.png", "-o", out / "good.mp4", "-m", model_path)
    assert single.exit_code == 0 and f"skipped: {out / 'good.mp4'} exists (use --overwrite)" in single.output


def test_wrong_person_warns_without_verbose(tmp_path):

    model, low, upside_down = foreign_identity_case(tmp_path)
    args = [low, "-i", upside_down, "-o", tmp_path / "o.mp4", "-m", model]
    result = enhance(*args)
    assert (
        result.exit_code == 0
        and "warning: " in result.output
        and "not found in the identity" in result.output
    )
    assert enhance(*args, "--overwrite", "--strict").exit_code == 1


def test_prepared_root_and_clip_folders_are_inputs(model_path, tmp_path):
    data = make_prepared_dataset(tmp_path / "data", n_train=2, n_test=1, n_frames=2, size=SIZE)
    root = enhance(data, "-o", tmp_path / "a", "-m", model_path)  # no -i: each clip's identity.png
    assert root.exit_code == 0, root.output
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "s00_clip.mp4",
        "s01_clip.mp4",
        "s02_clip.mp4",
    ]
    assert "3 enhanced, 0 skipped, 0 warnings, 0 failed" in root.output
    # what the shell makes of data/*/low.mkv: every input is named low.mkv
    lows = sorted(data.glob("*/low.mkv"))
    result = enhance(*lows, "-i", data / "s00_clip" / "identity.png", "-o", tmp_path / "b", "-m", model_path)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "s00_clip.mp4",
        "s01_clip.mp4",
        "s02_clip.mp4",
    ]
    one = enhance(data / "s01_clip", "-o", tmp_path / "one.mp4", "-m", model_path)
    assert one.exit_code == 0 and probe_video(tmp_path / "one.mp4").n_frames == 2


def test_pairs_with_an_output_column_need_no_output_flag(model_path, videos, tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"low,identity,output\n{videos / 'good.mp4'},{videos / 'id.png'},res/x.mp4\n")
    result = enhance("--pairs", pairs, "-m", model_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "res" / "x.mp4").is_file()
    pairs.write_text(f"low,identity\n{videos / 'good.mp4'},{videos / 'id.png'}\n")
    result = enhance("--pairs", pairs, "-m", model_path)
    assert result.exit_code == 2 and "-o OUTDIR" in result.output
