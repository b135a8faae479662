"""`facenhance enhance`: outputs keep frames and fps, the paper's sampler, batch independence, errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import foreign_identity_case, synthetic_clip
from typer.testing import CliRunner

from facenhance_cli.checkpoint import save_checkpoint
from facenhance_cli.cli import app
from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import load_preset
from facenhance_cli.nn.unet import build_network
from facenhance_cli.video import probe_video, read_video, write_image, write_video

SIZE = 32


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A tiny 32x32 model with T = 50 and perturbed (non-zero) weights: fast, and outputs depend on inputs."""
    config = load_preset("tiny").replace(
        **{
            "unet.image_size": SIZE,
            "diffusion.num_timesteps": 50,
            "diffusion.prediction": "v",
            "diffusion.loss": "v",
            "sampling.steps": 5,
        }
    )
    torch.manual_seed(0)
    net = build_network(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", config, net.state_dict())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    high, low, identity = synthetic_clip(5, size=SIZE, low_size=64, seed=1)
    write_video(root / "low25.mp4", low, 25)
    write_video(root / "low12.mkv", low[:3], 12, lossless=True)
    import cv2

    write_video(
        root / "low_big.mp4", np.stack([cv2.resize(f, (128, 128)) for f in low]), Fraction(30000, 1001)
    )
    write_image(root / "identity.png", identity)
    return root


def enhance(*args):
    return CliRunner().invoke(app, ["enhance", *map(str, args)])


def test_frames_size_and_fps_are_kept(model_path, inputs, tmp_path):
    for name, frames, fps in (
        ("low25.mp4", 5, 25),
        ("low12.mkv", 3, 12),
        ("low_big.mp4", 5, Fraction(30000, 1001)),
    ):
        out = tmp_path / f"{name}.mp4"
        result = enhance(
            inputs / name, "--identity", inputs / "identity.png", "-o", out, "--model", model_path
        )
        assert result.exit_code == 0, result.output
        video, got_fps = read_video(out)
        assert video.shape == (frames, SIZE, SIZE, 3)
        assert got_fps == fps
    assert not list(tmp_path.glob(".*tmp*"))


def test_many_inputs_to_a_folder_and_skip_existing(model_path, inputs, tmp_path):
    out = tmp_path / "out"
    args = [
        inputs / "low25.mp4",
        inputs / "low12.mkv",
        "--identity",
        inputs / "identity.png",
        "-o",
        out,
        "--model",
        model_path,
        "--lossless",
        "-b",
        "2",
    ]
    assert enhance(*args).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["low12.mkv", "low25.mkv"]
    before = (out / "low25.mkv").stat().st_mtime_ns
    result = enhance(*args, "--verbose")
    assert result.exit_code == 0 and "2 skipped" in result.output
    assert (out / "low25.mkv").stat().st_mtime_ns == before
    assert enhance(*args, "--overwrite").exit_code == 0
    assert (out / "low25.mkv").stat().st_mtime_ns != before


def test_same_seed_same_video_alone_or_in_a_batch(model_path, inputs, tmp_path):
    common = [
        "--identity",
        inputs / "identity.png",
        "--model",
        model_path,
        "--lossless",
        "--seed",
        "3",
        "--eta",
        "1",
        "--precision",
        "fp32",  # the batch-independence guarantee is fp32's (bf16 rounding depends on the batch's shape)
        "--backend",
        "torch",
    ]
    assert enhance(inputs / "low25.mp4", "-o", tmp_path / "alone.mkv", *common).exit_code == 0
    assert (
        enhance(
            inputs / "low12.mkv", inputs / "low25.mp4", "-o", tmp_path / "batch", "-b", "2", *common
        ).exit_code
        == 0
    )
    alone, _ = read_video(tmp_path / "alone.mkv")
    batched, _ = read_video(tmp_path / "batch" / "low25.mkv")
    # The noise is identical; only float rounding of batch-1 vs batch-2 convolutions differs, so a few
    # pixels may move by one 8-bit level. A different seed moves nearly every pixel by far more.
    diff = np.abs(alone.astype(int) - batched.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05
    assert (
        enhance(
            inputs / "low25.mp4", "-o", tmp_path / "other.mkv", *common[:-4], "--seed", "4", "--eta", "1"
        ).exit_code
        == 0
    )
    assert not np.array_equal(alone, read_video(tmp_path / "other.mkv")[0])


@pytest.mark.slow
def test_steps_T_eta0_is_the_papers_algorithm_3(model_path, inputs, tmp_path):
    """Enhance with --steps T --eta 0 equals an independent implementation of Algorithms 2-3."""
    from facenhance_cli.checkpoint import load_for_inference
    from facenhance_cli.data import to_tensor, to_uint8
    from facenhance_cli.diffusion.noise import frame_generator
    from facenhance_cli.diffusion.schedule import make_schedule

    result = enhance(
        inputs / "low12.mkv",
        "--identity",
        inputs / "identity.png",
        "-o",
        tmp_path / "paper.mkv",
        "--model",
        model_path,
        "--lossless",
        "--steps",
        "50",
        "--eta",
        "0",
        "--seed",
        "5",
    )
    assert result.exit_code == 0, result.output
    got, _ = read_video(tmp_path / "paper.mkv")

    model = load_for_inference(model_path)
    schedule = make_schedule(model.config.diffusion)
    abar = schedule.alphas_cumprod.numpy()
    low, _ = read_video(inputs / "low12.mkv")
    from facenhance_cli.video import read_image

    identity = to_tensor([read_image(inputs / "identity.png")])
    prev = identity
    for n in range(len(low)):
        gen = frame_generator(5, n)
        x = torch.randn(1, 3, SIZE, SIZE, generator=gen).double()  # x_T, then z: the documented draw order
        f_prev = prev + torch.randn(1, 3, SIZE, SIZE, generator=gen)
        for t in range(49, -1, -1):
            with torch.no_grad():
                cond = Conditioning(identity, to_tensor([low[n]]), prev_frame=f_prev)
                v = model.network(x.float(), torch.tensor([t]), cond).double()
            a, s = abar[t] ** 0.5, (1 - abar[t]) ** 0.5
            x0 = (a * x - s * v).clamp(-1, 1)  # v-prediction -> x0, clipped as the sampler does
            eps = (x - a * x0) / s
            a_prev = abar[t - 1] if t > 0 else 1.0
            x = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps  # the paper's x_{t-1}
        expected = to_uint8(x.float())[0]
        assert np.abs(got[n].astype(int) - expected.astype(int)).max() <= 1
        prev = x.float()


def test_identity_photo_is_aligned(faces_dir, require_weight):
    require_weight("dlib_landmarks68")
    from facenhance_cli.enhance import load_identity

    photo = sorted((faces_dir / "photos").glob("*.*g"))[0]
    image, note = load_identity(photo, 192)
    assert image.shape == (192, 192, 3)
    assert note and "aligned" in note


def test_interrupt_mid_video_leaves_no_output(model_path, inputs, tmp_path, monkeypatch):
    from facenhance_cli.diffusion import recurrent

    calls = {"n": 0}
    original = recurrent.generate_frame

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(recurrent, "generate_frame", flaky)
    result = enhance(
        inputs / "low25.mp4",
        "--identity",
        inputs / "identity.png",
        "-o",
        tmp_path / "out.mp4",
        "--model",
        model_path,
        "--compare",
        "--save-frames",
    )
    assert result.exit_code == 130 and "interrupted" in result.output
    assert calls["n"] == 3  # interrupted at frame 2: frames 0 and 1 had been written to every output
    assert list(tmp_path.iterdir()) == []


def test_audio_is_passed_through(model_path, inputs, tmp_path):
    import av

    src = tmp_path / "with_audio.mp4"
    _, low, _ = synthetic_clip(5, size=SIZE, seed=2)
    with av.open(str(src), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        for frame in low:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        samples = (np.sin(np.arange(16000 // 5) / 5) * 0.3).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in audio.encode(frame):
            container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    out = tmp_path / "out.mp4"
    result = enhance(src, "--identity", inputs / "identity.png", "-o", out, "--model", model_path)
    assert result.exit_code == 0, result.output
    assert probe_video(out).has_audio


@pytest.mark.parametrize(
    "case,code,message",
    [
        ("missing_identity", 1, "not found"),
        ("corrupt_video", 1, "cannot"),
        ("foreign_checkpoint", 1, "not a facenhance checkpoint"),
        ("bad_steps", 2, "--steps"),
        ("no_identity", 2, "--identity"),
        ("lossless_mp4", 2, ".mkv"),
        ("webm_output", 2, "use an .mp4"),
    ],
)
def test_error_paths(model_path, inputs, tmp_path, case, code, message):
    args = [
        inputs / "low25.mp4",
        "--identity",
        inputs / "identity.png",
        "-o",
        tmp_path / "o.mp4",
        "--model",
        model_path,
    ]
    if case == "missing_identity":
        args[2] = tmp_path / "nope.png"
    elif case == "corrupt_video":
        bad = tmp_path / "bad.mp4"
        bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
        args[0] = bad
    elif case == "foreign_checkpoint":
        torch.save({"w": torch.zeros(2)}, tmp_path / "foreign.pt")
        args[-1] = tmp_path / "foreign.pt"
    elif case == "bad_steps":
        args += ["--steps", "5000"]
    elif case == "webm_output":
        args[4] = tmp_path / "o.webm"
    elif case == "lossless_mp4":
        args += ["--lossless"]
    elif case == "no_identity":
        args = args[:1] + args[3:]
    result = enhance(*args)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.mp4").exists()
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_shard_takes_every_nth_input(model_path, inputs, tmp_path):
    args = [
        inputs / "low25.mp4",
        inputs / "low12.mkv",
        inputs / "low_big.mp4",
        "--identity",
        inputs / "identity.png",
        "-o",
        tmp_path,
        "--model",
        model_path,
        "--shard",
        "1/2",
    ]
    assert enhance(*args).exit_code == 0
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == ["low12.mp4"]


def test_prepare_input_aligns_a_real_video_first(model_path, inputs, tmp_path, faces_dir, require_weight):
    require_weight("dlib_landmarks68")
    from facenhance_cli.enhance import prepared_low_frames

    clip = faces_dir / "clips" / "b01_dreamtalk-mead_M030_front_happy_level3_001.mp4"
    frames, fps = read_video(clip, max_frames=4)
    real = tmp_path / "real.mp4"
    write_video(real, frames, fps)
    lows = prepared_low_frames(real, 64)
    assert len(lows) == 4 and lows[0].shape == (64, 64, 3)
    assert lows[0][-4:, :4].max() == 0 and lows[0][-4:, -4:].max() == 0  # black beside the chin
    assert lows[0][28:36, 28:36].mean() > 40  # the face in the centre
    out = tmp_path / "out.mp4"
    result = enhance(
        real, "--identity", inputs / "identity.png", "-o", out, "--model", model_path, "--prepare-input"
    )
    assert result.exit_code == 0, result.output
    assert read_video(out)[0].shape == (4, SIZE, SIZE, 3)


@pytest.mark.slow
def test_shipped_default_model_runs_without_model_flag_and_beats_the_identity(tmp_path):
    """The quick start exactly: found with no --model, its recommended sampler; closer to the ground truth
    than copying the identity image (v8: 33.46 dB with H.264 output, v7 33.38 in the same run; the identity
    about 31.1); and, run losslessly, away from the head every pixel is the identity image's."""
    from facenhance_cli.checkpoint import load_for_inference
    from facenhance_cli.metrics.fidelity import psnr_frames
    from facenhance_cli.video import read_image
    from facenhance_cli.weights import DEFAULT_MODEL, find_model

    default = find_model(None)
    assert default.name == f"{DEFAULT_MODEL}.pt"
    shipped = load_for_inference(default)  # v8: v7's one-step patch-2 network given the flow frame
    assert shipped.config.sampling.steps == 1 and shipped.config.unet.patch_size == 2
    assert shipped.config.unet.use_flow_frame and shipped.config.conditioning.edit_gate_levels == 12
    assert "truth" in shipped.meta["trained_on"]
    examples = Path(__file__).resolve().parents[1] / "examples"
    out = tmp_path / "out.mp4"
    result = enhance(examples / "low.mp4", "--identity", examples / "neutral.png", "-o", out)
    assert result.exit_code == 0, result.output
    video, out_fps = read_video(out)
    truth, fps = read_video(examples / "ground_truth.mp4")
    assert video.shape == truth.shape == (32, 192, 192, 3) and out_fps == fps
    identity = np.repeat(read_image(examples / "neutral.png")[None], len(truth), 0)
    ours, copied = psnr_frames(video, truth), psnr_frames(identity, truth)
    assert ours.mean() > copied[np.isfinite(copied)].mean() + 1.0
    assert_identity_outside_the_edit_mask(default, tmp_path, n_frames=12)


def test_pasted_frame_model_pastes_the_low_face_as_the_paste_baseline_does(inputs, tmp_path):
    """An untrained pasted-frame model returns its skip base exactly: enhance must feed it the paste."""
    from facenhance_cli.evaluation import paste_baseline
    from facenhance_cli.video import read_image

    config = load_preset("tiny").replace(
        **{
            "unet.image_size": SIZE,
            "unet.identity_skip": True,
            "unet.use_pasted_frame": True,
            "diffusion.num_timesteps": 50,
            "sampling.steps": 3,
        }
    )
    model = save_checkpoint(tmp_path / "pasted.pt", config, build_network(config).state_dict())
    out = tmp_path / "out.mkv"
    result = enhance(
        inputs / "low12.mkv", "--identity", inputs / "identity.png", "-o", out, "--model", model, "--lossless"
    )
    assert result.exit_code == 0, result.output
    got, _ = read_video(out)
    low, _ = read_video(inputs / "low12.mkv")
    expected = paste_baseline(read_image(inputs / "identity.png"), low)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert np.abs(expected.astype(int) - read_image(inputs / "identity.png").astype(int)).max() > 20


def test_a_foreign_identity_gets_a_note(tmp_path):
    """The pasted-frame registration scores the match: the example's own identity passes silently, an
    upside-down one (not the face of the low video) gets a note."""

    model, low, upside_down = foreign_identity_case(tmp_path)
    examples = Path(__file__).resolve().parents[1] / "examples"
    for identity, noted in ((examples / "neutral.png", False), (upside_down, True)):
        out = tmp_path / f"{identity.stem}.mp4"
        result = enhance(low, "--identity", identity, "-o", out, "--model", model, "-v")
        assert result.exit_code == 0 and out.is_file(), result.output
        assert ("not found in the identity image" in result.output) == noted, result.output


def edm_masked_config(size: int):
    return load_preset("tiny").replace(
        **{
            "unet.image_size": size,
            "unet.use_prev_frame": False,
            "unet.identity_skip": True,
            "unet.use_pasted_frame": True,
            "unet.use_edit_mask": True,
            "diffusion.prediction": "x0",
            "diffusion.loss": "x0",
            "diffusion.preconditioning": "edm",
            "diffusion.sigma_data": 0.2,
            "sampling.steps": 3,
        }
    )


def random_masked_model(tmp_path: Path) -> Path:
    """An EDM, edit-masked tiny model at 192 px whose random weights edit everywhere they may."""
    config = edm_masked_config(192)
    torch.manual_seed(0)
    net = build_network(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return save_checkpoint(tmp_path / "masked.pt", config, net.state_dict())


def assert_identity_outside_the_edit_mask(model, tmp_path, n_frames=3):
    """Enhance the example's first frames losslessly; where the edit mask is 0 the output must be the
    identity image bit for bit, and inside it the model must have changed something (the mask as wide as
    the model's `conditioning.edit_margin`)."""
    from facenhance_cli.checkpoint import load_for_inference
    from facenhance_cli.pasting import edit_mask, locate_low_face
    from facenhance_cli.video import read_image

    margin = load_for_inference(model).config.conditioning.edit_margin

    examples = Path(__file__).resolve().parents[1] / "examples"
    low, fps = read_video(examples / "low.mp4", max_frames=n_frames)
    write_video(tmp_path / "low.mkv", low, fps, lossless=True)
    out = tmp_path / "out.mkv"
    result = enhance(
        tmp_path / "low.mkv", "-i", examples / "neutral.png", "-o", out, "--model", model, "--lossless"
    )
    assert result.exit_code == 0, result.output
    got, _ = read_video(out)
    identity = read_image(examples / "neutral.png")
    matrix, _ = locate_low_face(identity, low[0])
    changed = 0
    for frame, low_frame in zip(got, low, strict=True):
        outside = edit_mask(low_frame, matrix, identity.shape[0], margin=margin) == 0
        assert 0.1 < outside.mean() < 0.9  # the mask covers the head (32 px beyond it: 84%), not the frame
        assert (frame[outside] == identity[outside]).all()
        changed = max(changed, np.abs(frame[~outside].astype(int) - identity[~outside].astype(int)).max())
    assert changed > 10  # inside, on some frame (a gated model leaves a neutral frame nearly as it is)


def test_edit_masked_model_keeps_the_identity_image_away_from_the_head(tmp_path):
    """An EDM, edit-masked model with random weights (it edits everywhere it may) leaves every pixel
    outside the edit mask equal to the identity image."""
    model = random_masked_model(tmp_path)
    assert_identity_outside_the_edit_mask(model, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("shared_noise", [False, True])
def test_frames_batched_per_call_give_the_same_video(tmp_path, shared_noise):
    """A model without the previous frame samples several frames of a video per call; the result is the
    same video whatever the number per call, alone or beside another video (eta 1: fresh noise each step),
    up to float rounding (a level on a few pixels)."""
    model = random_masked_model(tmp_path)
    examples = Path(__file__).resolve().parents[1] / "examples"
    low, fps = read_video(examples / "low.mp4", max_frames=5)
    write_video(tmp_path / "a.mkv", low, fps, lossless=True)
    write_video(tmp_path / "b.mkv", low[::-1], fps, lossless=True)
    noise = "--shared-noise" if shared_noise else "--per-frame-noise"
    videos = {}
    for per_call, batch in ((1, 1), (3, 1), (8, 2)):
        out = tmp_path / f"out_{per_call}_{batch}"
        result = enhance(
            tmp_path / "a.mkv", tmp_path / "b.mkv", "-i", examples / "neutral.png", "-o", out, "--model", model,
            "--lossless", "--frames-per-call", per_call, "--batch-videos", batch, "--eta", 1, noise,
            "--precision", "fp32", "--backend", "torch",  # bf16 rounding depends on the batch's shape
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        videos[per_call] = read_video(out / "a.mkv")[0]
        assert len(videos[per_call]) == 5 and len(read_video(out / "b.mkv")[0]) == 5
    for other in (videos[3], videos[8]):  # oneDNN's kernels for another batch size round differently
        assert np.abs(videos[1].astype(int) - other).max() <= 1 and (videos[1] != other).mean() < 1e-4
    assert not (videos[1][0] == videos[1][1]).all()


@pytest.mark.slow
def test_sigterm_mid_video_leaves_no_output(model_path, tmp_path):
    """kill (SIGTERM) takes Ctrl-C's path: exit 130, one line, no output and no temporary file left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    high, low, identity = synthetic_clip(120, size=SIZE, low_size=64, seed=2)
    write_video(tmp_path / "low.mp4", low, 25)
    write_image(tmp_path / "identity.png", identity)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "facenhance_cli", "enhance", tmp_path / "low.mp4", "--identity",
           tmp_path / "identity.png", "-o", out / "video.mp4", "--model", model_path, "--steps", 50,
           "--backend", "torch", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(list(map(str, cmd)), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(out.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # the first frame is being written to a temporary file
    assert proc.poll() is None, "enhance finished before it could be stopped"
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and stderr.strip().splitlines() == ["error: interrupted"]
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("scope", ["edit", "face"])
def test_expression_gate_scales_the_edit(tmp_path, scope):
    """conditioning.edit_gate_levels: the model's edit is multiplied by the expression gate and nothing
    else changes (not a network input): at DDIM 1, gated - base = gate x (ungated - base) to a level. With
    edit_gate_scope = "face" the gate is open in the ring around the pasted face (`face_scoped_gate`)."""
    import torch as _torch

    from facenhance_cli.pasting import (
        expression_gate,
        face_scoped_gate,
        locate_low_face,
        paste_low_face,
        warp_low_face,
    )
    from facenhance_cli.video import read_image

    ungated = random_masked_model(tmp_path)
    payload = _torch.load(ungated, weights_only=True)
    gate_settings = {"conditioning.edit_gate_levels": 12.0, "conditioning.edit_gate_scope": scope}
    config = edm_masked_config(192).replace(**gate_settings)
    gated = save_checkpoint(tmp_path / "gated.pt", config, payload["ema"])
    examples = Path(__file__).resolve().parents[1] / "examples"
    low, fps = read_video(examples / "low.mp4", max_frames=2)
    write_video(tmp_path / "low.mkv", low, fps, lossless=True)
    identity = read_image(examples / "neutral.png")
    matrix, _ = locate_low_face(identity, low[0])
    outputs = {}
    for name, model in (("gated", gated), ("ungated", ungated)):
        out = tmp_path / f"{name}.mkv"
        result = enhance(tmp_path / "low.mkv", "-i", examples / "neutral.png", "-o", out, "--model", model,
                         "--lossless", "--backend", "torch", "--steps", 1)  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs[name] = read_video(out)[0].astype(float)
    for n, low_frame in enumerate(low):
        base = paste_low_face(identity, low_frame, matrix).astype(float)
        gate = expression_gate(identity, low_frame, matrix, 12.0)[..., None]
        if scope == "face":
            gate = face_scoped_gate(gate, warp_low_face(low_frame, matrix, 192).alpha)
        edit = outputs["ungated"][n] - base
        unclipped = (outputs["ungated"][n] > 0) & (outputs["ungated"][n] < 255)
        expected = base + gate * edit
        assert np.abs(outputs["gated"][n] - expected)[unclipped].max() <= 1.5
        assert np.abs(outputs["gated"][n] - outputs["ungated"][n]).max() > 10  # the gate closed somewhere
