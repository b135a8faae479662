"""The console entry point skips the interpreter's teardown once torch is loaded (docs/speed.md): what a
command wrote (its output file, its --json on stdout, its error line) and its exit code must be what the
ordinary exit gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest
from helpers import write_low_clip

from facenhance_cli.checkpoint import save_checkpoint
from facenhance_cli.config import load_preset
from facenhance_cli.nn.unet import build_network

SIZE = 32


def cli(*args, full_exit: bool):
    env = {**os.environ, "FACENHANCE_FULL_EXIT": "1" if full_exit else "0"}
    command = [sys.executable, "-m", "facenhance_cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def frames(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture
def clip_and_model(tmp_path):
    clip = write_low_clip(tmp_path, 3, SIZE)
    config = load_preset("tiny").replace(**{"unet.image_size": SIZE, "sampling.steps": 1})
    model = save_checkpoint(clip / "m.pt", config, build_network(config).state_dict())
    return clip, model


def test_fast_exit_keeps_the_output_and_the_report(clip_and_model):
    clip, model = clip_and_model
    outputs = {full_exit: clip / f"out-{full_exit}.mkv" for full_exit in (True, False)}
    for full_exit, out in outputs.items():
        proc = cli("enhance", clip / "in.mp4", "-i", clip / "id.png", "-o", out, "-m", model, "--lossless",
                   full_exit=full_exit)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert f"wrote {out} (3 frames" in proc.stderr
    fast_frames = frames(outputs[False])
    assert fast_frames.shape == (3, SIZE, SIZE, 3)
    assert np.array_equal(fast_frames, frames(outputs[True]))
    reports = []
    for full_exit in (True, False):
        scored = cli("eval", outputs[False], "--gt", outputs[True], "--metrics", "psnr,ssim", "--baseline", "",
                     "--json", "-", full_exit=full_exit)  # fmt: skip
        assert scored.returncode == 0, scored.stderr
        reports.append(json.loads(scored.stdout))  # the whole document reached the pipe
    assert reports[0] == reports[1] and reports[1]["n_videos"] == 1 and reports[1]["identical_frames"] == 3


def test_fast_exit_keeps_a_failures_line_and_code(clip_and_model):
    clip, model = clip_and_model
    (clip / "bad.png").write_bytes(b"not an image")
    for full_exit in (True, False):
        proc = cli("enhance", clip / "in.mp4", "-i", clip / "bad.png", "-o", clip / "o.mkv", "-m", model,
                   full_exit=full_exit)  # fmt: skip
        assert proc.returncode == 1
        assert proc.stderr.strip() == f"error: cannot read image {clip / 'bad.png'}"
        assert not (clip / "o.mkv").exists()


@pytest.mark.skipif(
    not os.path.exists("/dev/full"), reason="needs Linux's /dev/full (a disk that is always full)"
)
def test_fast_exit_keeps_a_failed_write_a_failure(clip_and_model):
    """stdout on a full disk: the report cannot be written, and the exit code says so either way."""
    clip, model = clip_and_model
    out = clip / "out.mkv"
    assert (
        cli(
            "enhance", clip / "in.mp4", "-i", clip / "id.png", "-o", out, "-m", model, full_exit=False
        ).returncode
        == 0
    )
    for full_exit in (True, False):
        env = {**os.environ, "FACENHANCE_FULL_EXIT": "1" if full_exit else "0"}
        command = [sys.executable, "-m", "facenhance_cli", "eval", str(out), "--gt", str(out), "--metrics", "psnr",
                   "--baseline", "", "--json", "-"]  # fmt: skip
        with open("/dev/full", "w") as full:
            proc = subprocess.run(
                command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, env=env
            )
        assert proc.returncode == 1
        assert (
            proc.stderr.strip().splitlines()[-1].startswith("error: a write failed: No space left on device")
        )
