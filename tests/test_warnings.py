"""Issue 25: runs that worked but misled the user now warn (on stderr; `enhance --strict` fails the video):
a grayscale identity image, a prepared clip short of frames, a 1-frame video prepared as N copies, the
fallback alignment template under --prepare-input, a models folder that is not there, and an empty
existing output, which is enhanced again rather than skipped as finished."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from helpers import make_prepared_dataset, save_tiny_model, synthetic_clip, write_low_clip
from typer.testing import CliRunner

from facenhance_cli.cli import app
from facenhance_cli.video import count_frames, read_video, write_image, write_video

SIZE = 32


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), SIZE)


@pytest.fixture
def clip(tmp_path):
    return write_low_clip(tmp_path, 2, SIZE)  # in.mp4, id.png


def run(*args, env=None):
    return CliRunner().invoke(app, [*map(str, args)], env=env)


def warnings_of(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("warning: ")]


def test_a_grayscale_identity_image_is_a_warning(model_path, clip):
    from facenhance_cli.video import read_image

    colour = read_image(clip / "id.png")
    write_image(clip / "gray.png", colour.mean(axis=2, keepdims=True).repeat(3, axis=2).astype(np.uint8))
    args = [clip / "in.mp4", "-i", clip / "gray.png", "-m", model_path]
    result = run("enhance", *args, "-o", clip / "o.mp4")
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == [
        "warning: identity image gray.png is grayscale: the model expects a colour photo"
    ]
    strict = run("enhance", *args, "-o", clip / "strict.mp4", "--strict")
    assert strict.exit_code == 1 and "grayscale" in strict.output and "(--strict)" in strict.output
    assert not (clip / "strict.mp4").exists()
    assert not warnings_of(run("enhance", *args[:2], clip / "id.png", "-m", model_path, "-o", clip / "c.mp4"))


def _short_clip(tmp_path: Path) -> Path:
    """A prepared folder whose one clip's meta.json says 4 frames and whose low.mkv holds 2 (truncated)."""
    data = make_prepared_dataset(tmp_path / "data", n_train=1, n_test=0, n_frames=4, size=SIZE)
    folder = data / "s00_clip"
    (folder / "meta.json").write_text(json.dumps({"clip_id": "s00_clip", "fps": 25, "n_frames": 4}))
    low, fps = read_video(folder / "low.mkv")
    write_video(folder / "low.mkv", low[:2], fps, lossless=True)
    return folder


def test_a_prepared_clip_short_of_frames_is_a_warning_in_enhance(model_path, tmp_path):
    folder = _short_clip(tmp_path)
    result = run("enhance", folder, "-o", tmp_path / "o.mp4", "-m", model_path)
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == [
        "warning: s00_clip/low.mkv decoded 2 of the 4 frames its meta.json lists (truncated? rerun "
        "`prepare --overwrite` on that clip)"
    ]
    assert "1 warning" in result.output
    strict = run("enhance", folder, "-o", tmp_path / "strict.mp4", "-m", model_path, "--strict")
    assert strict.exit_code == 1 and "decoded 2 of the 4 frames" in strict.output
    assert not (tmp_path / "strict.mp4").exists() and not list(tmp_path.glob(".*tmp*"))


def test_a_prepared_clip_short_of_frames_is_a_warning_in_training(tmp_path, caplog):
    from facenhance_cli.config import load_preset
    from facenhance_cli.data import FrameDataset, read_manifest

    _short_clip(tmp_path)
    config = load_preset("tiny").replace(**{"unet.image_size": SIZE})
    with caplog.at_level(logging.WARNING, logger="facenhance_cli.data"):
        for in_memory in (True, False):
            dataset = FrameDataset(read_manifest(tmp_path / "data"), config, in_memory=in_memory)
            assert len(dataset) == 2
    assert caplog.text.count("clip s00_clip decodes 2 of the 4 frames its meta.json lists") == 2


@pytest.mark.slow  # dlib on a real clip, twice: about 4 s (test_repeat_warnings_and_notes runs by default)
def test_a_single_frame_video_prepared_as_copies_is_a_warning(tmp_path, faces_dir, require_weight):
    require_weight("dlib_landmarks68")
    frames, fps = read_video(faces_dir / "clips" / "b01_dreamtalk-mead_M030_front_happy_level3_001.mp4", 1)
    write_video(tmp_path / "b01_still.mp4", frames[:1], fps)
    assert count_frames(tmp_path / "b01_still.mp4") == 1
    out = tmp_path / "data"
    result = run("prepare", tmp_path / "b01_still.mp4", "-o", out, "--frames", "4", "--no-preview")
    assert result.exit_code == 0, result.output
    expected = "warning: b01_still: the video has a single frame: 4 copies of it, no motion (a still image?)"
    assert expected in result.output.splitlines()
    row = json.loads((out / "manifest.jsonl").read_text())
    assert row["warnings"] == [expected.split(": ", 2)[2]]
    assert json.loads((out / "b01_still" / "meta.json").read_text())["warnings"] == row["warnings"]
    again = run("prepare", tmp_path / "b01_still.mp4", "-o", out, "--frames", "4", "--no-preview")
    assert expected in again.output.splitlines()  # a rerun that skips the clip says it again


def test_repeat_warnings_and_notes():
    from facenhance_cli.prepare.clip import _repeat_warnings

    def where(indices, segment, total):
        return {"frame_indices": indices, "segment": segment, "n_source_frames": total}

    assert _repeat_warnings(where([0, 1, 2], [0, 3], 3), 3) == ([], [])
    assert _repeat_warnings(where([0, 0, 1, 1], [0, 2], 4), 4) == (
        [],
        ["2 source frames for 4: some repeated"],
    )
    warnings, _ = _repeat_warnings(where([5, 5], [5, 6], 10), 2)
    assert warnings == ["the segment 5:6 holds a single frame: 2 copies of it, no motion (a still image?)"]


def test_prepare_input_with_the_fallback_template_is_a_warning(model_path, clip, monkeypatch):
    """`prepare` warns when the OpenFace PDM is missing; `enhance --prepare-input` now does too."""
    import facenhance_cli.enhance.videos as videos
    from facenhance_cli import faces

    fallback = faces.AlignmentTemplate(faces.fallback_template_points(), "cmu-openface-fallback")
    monkeypatch.setattr(faces, "alignment_template", lambda weights_dir=None: fallback)
    low = read_video(clip / "in.mp4")[0]
    monkeypatch.setattr(videos, "prepared_low_frames", lambda path, size, weights_dir=None: list(low))
    args = [clip / "in.mp4", "-i", clip / "id.png", "-m", model_path, "--prepare-input"]
    result = run("enhance", *args, "-o", clip / "o.mp4")
    assert result.exit_code == 0, result.output
    assert any("--prepare-input: the OpenFace PDM (openface_pdm) is not in" in w for w in warnings_of(result))
    strict = run("enhance", *args, "-o", clip / "strict.mp4", "--strict")
    assert strict.exit_code == 1 and "(--strict)" in strict.output and not (clip / "strict.mp4").exists()


def test_a_models_folder_that_is_not_there_is_a_warning(model_path, clip, tmp_path):
    missing = tmp_path / "no-such-folder"
    env = {"FACENHANCE_MODELS": str(missing)}
    args = [clip / "in.mp4", "-i", clip / "id.png", "--models-dir", model_path.parent, "-m", "tiny"]
    result = run("enhance", *args, "-o", clip / "o.mp4", env=env)
    assert result.exit_code == 0, result.output
    said = f"warning: FACENHANCE_MODELS folder {missing} does not exist: models are not looked up there"
    assert said in result.output.splitlines()
    strict = run("enhance", *args, "-o", clip / "strict.mp4", "--strict", env=env)
    assert strict.exit_code == 1 and "does not exist" in strict.output and "(--strict)" in strict.output
    assert not (clip / "strict.mp4").exists()
    listed = run("models", "--models-dir", missing, env={"FACENHANCE_MODELS": None})
    assert listed.exit_code == 0 and f"--models-dir folder {missing} does not exist" in listed.output
    gone = run("enhance", *args[:5], "-m", "nope", "-o", clip / "x.mp4", env=env)
    assert gone.exit_code == 1 and "FACENHANCE_MODELS folder" in gone.output  # said in the error too


def test_an_empty_existing_output_is_enhanced_again_not_skipped(model_path, clip):
    out = clip / "o.mp4"
    out.write_bytes(b"")  # left by something else: ours are renamed into place whole
    args = [clip / "in.mp4", "-i", clip / "id.png", "-m", model_path, "-o", out]
    strict = run("enhance", *args, "--strict")
    assert strict.exit_code == 1 and "is empty (0 bytes)" in strict.output
    assert out.stat().st_size == 0  # --strict: nothing written
    result = run("enhance", *args)
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == [f"warning: {out} exists but is empty (0 bytes): enhancing it again"]
    assert len(read_video(out)[0]) == 2
    again = run("enhance", *args)  # now finished: skipped as before
    assert again.exit_code == 0 and "skipped" in again.output and not warnings_of(again)


def test_a_batch_counts_the_empty_output_it_redid(model_path, clip):
    write_video(clip / "b.mp4", synthetic_clip(2, size=SIZE, seed=3)[1], 25)
    (clip / "out").mkdir()
    (clip / "out" / "in.mp4").write_bytes(b"")
    args = [clip / "in.mp4", clip / "b.mp4", "-i", clip / "id.png", "-m", model_path, "-o", clip / "out"]
    result = run("enhance", *args)
    assert result.exit_code == 0, result.output
    assert "2 enhanced, 0 skipped, 1 warnings, 0 failed" in result.output
