"""`facenhance train`: learning, resume equivalence, DDP, files it writes, error paths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import make_prepared_dataset
from typer.testing import CliRunner

from facenhance_cli.cli import app
from facenhance_cli.config import load_preset
from facenhance_cli.training import Trainer, TrainOptions, train
from facenhance_cli.video import read_video, write_video

SMALL_SET = ["--preset", "tiny", "--set", "unet.image_size=32"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_prepared_dataset(tmp_path_factory.mktemp("prepared"), n_train=2, n_test=1, n_frames=4)


def tiny_config(**overrides):
    return load_preset("tiny").replace(**{"unet.image_size": 32, "training.log_every": 5, **overrides})


def run_cli(*args):
    return CliRunner().invoke(app, list(map(str, args)))


@pytest.mark.slow
def test_loss_goes_down(data_dir, tmp_path):
    config = tiny_config(
        **{
            "training.max_steps": 150,
            "training.validate_every": 1000,
            "training.sample_every": 1000,
            "training.checkpoint_every": 1000,
        }
    )
    train(TrainOptions(data_dir, tmp_path / "run", config))
    losses = [
        r["loss"]
        for r in map(json.loads, (tmp_path / "run" / "log.jsonl").read_text().splitlines())
        if "loss" in r
    ]
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.6 * first, (first, last)


@pytest.mark.slow
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(data_dir, tmp_path):
    full = tiny_config(**{"training.max_steps": 12, "training.checkpoint_every": 4})
    train(TrainOptions(data_dir, tmp_path / "full", full))
    half = tiny_config(**{"training.max_steps": 6, "training.checkpoint_every": 4})
    train(TrainOptions(data_dir, tmp_path / "split", half))
    result = run_cli(
        "train", data_dir, "-o", tmp_path / "split", "--max-steps", 12, "--quiet"
    )  # resume, no preset
    assert result.exit_code == 0, result.output
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert a["training"]["step"] == b["training"]["step"] == 12
    # Resuming without a preset keeps the run's own settings (log every 5 steps), not the default preset's.
    assert b["config"]["training"]["log_every"] == 5 and b["config"]["training"]["max_steps"] == 12
    for key in a["ema"]:
        torch.testing.assert_close(a["ema"][key], b["ema"][key], rtol=0, atol=0)
        torch.testing.assert_close(a["training"]["model"][key], b["training"]["model"][key], rtol=0, atol=0)
    # The optimiser state came back too (Adam moments).
    state_a = a["training"]["optimizer"]["state"][0]["exp_avg_sq"]
    torch.testing.assert_close(state_a, b["training"]["optimizer"]["state"][0]["exp_avg_sq"], rtol=0, atol=0)
    # The log holds each step once.
    steps = [
        r["step"]
        for r in map(json.loads, (tmp_path / "split" / "log.jsonl").read_text().splitlines())
        if "loss" in r
    ]
    assert steps == sorted(set(steps))


def test_run_folder_contents_and_checkpoint_format(data_dir, tmp_path):
    result = run_cli(
        "train",
        data_dir,
        "-o",
        tmp_path / "run",
        *SMALL_SET,
        "--max-steps",
        10,
        "--set",
        "training.sample_every=5",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    for name in ("last.pt", "best.pt", "final.pt", "log.jsonl", "config.toml", "loss.png"):
        assert (run / name).is_file(), name
    samples = sorted((run / "samples").glob("*.png"))
    assert [p.name for p in samples] == ["step_0000005.png", "step_0000010.png"]
    from facenhance_cli.video import read_image

    grid = read_image(samples[-1])
    assert grid.shape == (4 * 32, 4 * 32, 3)  # 4 frames x (identity | low | generated | truth)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"step", "loss", "lr", "grad_norm", "steps_per_s"} <= set(records[0])
    assert any("val_loss" in r for r in records)
    final = torch.load(run / "final.pt", weights_only=True)
    assert "training" not in final and final["meta"]["step"] == 10
    assert "image_size = 32" in (run / "config.toml").read_text()
    from facenhance_cli.checkpoint import load_for_inference

    assert load_for_inference(run / "final.pt").config.unet.image_size == 32


def test_resume_with_another_config_is_refused(data_dir, tmp_path):
    assert (
        run_cli("train", data_dir, "-o", tmp_path / "run", *SMALL_SET, "--max-steps", 2, "--quiet").exit_code
        == 0
    )
    result = run_cli(
        "train",
        data_dir,
        "-o",
        tmp_path / "run",
        *SMALL_SET,
        "--set",
        "unet.base_channels=16",
        "--max-steps",
        4,
        "--quiet",
    )
    assert result.exit_code == 2
    assert "another config" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing_dir"], "not found"),
        (["EMPTY"], "manifest.jsonl"),
        (["DATA", "--set", "unet.nope=1"], "unknown config key"),
        (["DATA", "--batch-size", "1000"], "larger than"),
        (["DATA", "--resume"], "no checkpoint"),
        (["DATA", "--precision", "fp16", "--device", "cpu"], "CUDA"),  # bf16 runs on the CPU (issue 12)
    ],
)
def test_error_paths(data_dir, tmp_path, args, message):
    (tmp_path / "EMPTY").mkdir()
    args = [str(data_dir) if a == "DATA" else str(tmp_path / "EMPTY") if a == "EMPTY" else a for a in args]
    result = run_cli("train", *args, "-o", tmp_path / "run", *SMALL_SET, "--max-steps", 1, "--quiet")
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_no_train_split_is_an_error(tmp_path):
    data = make_prepared_dataset(tmp_path / "d", n_train=0, n_test=1, n_frames=2)
    result = run_cli("train", data, "-o", tmp_path / "run", *SMALL_SET, "--quiet")
    assert result.exit_code == 1 and "train split" in result.output


def test_ctrl_c_saves_a_checkpoint(data_dir, tmp_path, monkeypatch):
    trainer = Trainer(TrainOptions(data_dir, tmp_path / "run", tiny_config(**{"training.max_steps": 50})))
    original = trainer.train_step

    def interrupted():
        if trainer.step == 3:
            raise KeyboardInterrupt
        return original()

    trainer.train_step = interrupted
    from facenhance_cli.training import TrainingInterrupted

    with pytest.raises(TrainingInterrupted, match="step 3"):
        trainer.run()
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert saved["training"]["step"] == 3
    assert not list((tmp_path / "run").glob(".*tmp*"))


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(data_dir, tmp_path):
    """torchrun with 2 gloo processes and batch 2 each = one process with batch 4, step for step."""
    common = [
        "train",
        str(data_dir),
        *SMALL_SET,
        "--max-steps",
        "3",
        "--quiet",
        "--device",
        "cpu",
        "--set",
        "training.validate_every=100",
        "--set",
        "training.sample_every=100",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            "-m",
            "facenhance_cli",
            *common,
            "-o",
            str(tmp_path / "ddp"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    single = run_cli(*common, "-o", tmp_path / "single")
    assert single.exit_code == 0, single.output
    a = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "single" / "last.pt", weights_only=True)
    assert a["meta"]["world_size"] == 2 and b["meta"]["world_size"] == 1
    for key in a["training"]["model"]:
        torch.testing.assert_close(
            a["training"]["model"][key], b["training"]["model"][key], rtol=1e-4, atol=1e-5
        )


def test_unreadable_clip_is_skipped_and_streaming_matches_memory(tmp_path, caplog):
    from facenhance_cli.data import FrameDataset, read_manifest

    data = make_prepared_dataset(tmp_path / "d", n_train=3, n_test=0, n_frames=3)
    (data / "s01_clip" / "high.mkv").write_bytes(b"not a video")
    entries = read_manifest(data)
    in_memory = FrameDataset(entries, tiny_config(), in_memory=True, workers=2)
    streaming = FrameDataset(entries, tiny_config(), in_memory=False, cache_clips=1)
    assert [e.clip_id for e in in_memory.entries] == ["s00_clip", "s02_clip"]
    assert "skipping unreadable clip s01_clip" in caplog.text
    for position in range(len(in_memory)):
        a, b = in_memory.sample(position, flip=True), streaming.sample(position, flip=True)
        assert (a.target == b.target).all()
        for name in ("identity_image", "low_frame", "prev_frame"):
            assert (getattr(a.inputs, name) == getattr(b.inputs, name)).all()
    # Frame 0's previous frame is the identity image (what inference conditions frame 0 on).
    first = in_memory.sample(0, flip=False).inputs
    assert first.prev_frame is not None and (first.prev_frame == first.identity_image).all()
    for clip_id in ("s00_clip", "s02_clip"):
        (data / clip_id / "low.mkv").write_bytes(b"")
    with pytest.raises(Exception, match="no readable clips"):
        FrameDataset(read_manifest(data), tiny_config())


def test_pasted_frame_samples_and_a_run_with_them(data_dir, tmp_path):
    """Samples carry the paste made with the clip's registered warp, flipped with the rest; training runs."""
    from facenhance_cli.data import FrameDataset, read_manifest
    from facenhance_cli.pasting import paste_low_face

    pasting = tiny_config(**{"unet.identity_skip": True, "unet.use_pasted_frame": True})
    dataset = FrameDataset(read_manifest(data_dir), pasting)
    plain, flipped = dataset.sample(5, flip=False).inputs, dataset.sample(5, flip=True).inputs
    ci, n = dataset.index[5]
    clip = dataset.clip(ci)
    assert plain.pasted_frame is not None and flipped.pasted_frame is not None
    assert (plain.pasted_frame == paste_low_face(clip.identity, clip.low[n], dataset.paste_matrix(ci))).all()
    assert (flipped.pasted_frame == plain.pasted_frame[:, ::-1]).all()
    assert (
        FrameDataset(read_manifest(data_dir), tiny_config()).sample(5, flip=False).inputs.pasted_frame is None
    )

    config = tiny_config(
        **{
            "unet.identity_skip": True,
            "unet.use_pasted_frame": True,
            "training.max_steps": 4,
            "training.validate_every": 2,
            "training.sample_every": 4,
        }
    )
    train(TrainOptions(data_dir, tmp_path / "run", config))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("val_loss" in r for r in log) and any((tmp_path / "run" / "samples").glob("*.png"))


def test_a_diverging_run_stops_before_saving_a_broken_model(data_dir, tmp_path):
    """The loss is read from the device only when logging or saving; a non-finite one stops the run then,
    and no checkpoint written holds a non-finite weight."""
    from facenhance_cli.errors import FacenhanceError

    config = tiny_config(
        **{
            "training.max_steps": 8,
            "training.lr": 1e30,
            "training.log_every": 4,
            "training.checkpoint_every": 4,
            "training.validate_every": 1000,
            "training.sample_every": 1000,
        }
    )
    with pytest.raises(FacenhanceError, match="loss became"):
        train(TrainOptions(data_dir, tmp_path / "run", config))
    for path in (tmp_path / "run").glob("*.pt"):
        payload = torch.load(path, weights_only=True)
        assert all(torch.isfinite(v).all() for v in payload["ema"].values() if v.is_floating_point())


def test_aligned_targets_move_the_head_back_onto_frame_zero(tmp_path):
    """With training.align_targets, a frame whose head moved (here: the whole frame shifted by 9, 5 px,
    landmarks with it) comes back onto frame 0's pose; without landmarks in meta.json nothing is moved."""
    import cv2

    from facenhance_cli.data import FrameDataset, read_manifest

    data = make_prepared_dataset(tmp_path / "data", n_train=1, n_test=0, n_frames=2, size=64)
    clip = data / "s00_clip"
    high, _ = read_video(clip / "high.mkv")
    shift = np.float64([[1, 0, 9], [0, 1, 5]])
    moved = cv2.warpAffine(high[0], shift, (64, 64), borderMode=cv2.BORDER_REPLICATE)
    write_video(clip / "high.mkv", np.stack([high[0], moved]), 25, lossless=True)
    rng = np.random.default_rng(0)
    points = rng.uniform(16, 48, (68, 2))
    meta = json.loads((clip / "meta.json").read_text())
    meta.update(size=64, landmarks_high=[points.tolist(), (points + [9, 5]).tolist()])
    (clip / "meta.json").write_text(json.dumps(meta))
    aligning = tiny_config(**{"unet.image_size": 64, "training.align_targets": True})
    aligned = FrameDataset(read_manifest(data), aligning).sample(1, flip=False).target
    raw = (
        FrameDataset(read_manifest(data), tiny_config(**{"unet.image_size": 64})).sample(1, flip=False).target
    )
    inner = (slice(12, 52), slice(12, 52))
    assert np.abs(aligned[inner].astype(int) - high[0][inner].astype(int)).max() <= 2
    assert np.abs(raw[inner].astype(int) - high[0][inner].astype(int)).max() > 20
    (clip / "meta.json").write_text(json.dumps({"clip_id": "s00_clip"}))
    unaligned = FrameDataset(read_manifest(data), aligning).sample(1, flip=False).target
    assert (unaligned == raw).all()


def test_aligned_targets_follow_prepares_motion_file_over_the_landmarks(tmp_path):
    """With training.target_motion = registered and prepare's motion.csv in the clip folder the targets are
    moved back by its (registered) motion, not by the landmarks' fit, and a frame it calls still is the high
    frame itself, not resampled; the default (landmarks) leaves motion.csv alone."""
    import cv2

    from facenhance_cli.data import FrameDataset, read_manifest
    from facenhance_cli.motion import HeadMotion, motion_csv_text

    data = make_prepared_dataset(tmp_path / "data", n_train=1, n_test=0, n_frames=3, size=64)
    clip = data / "s00_clip"
    high, _ = read_video(clip / "high.mkv")
    moved = cv2.warpAffine(
        high[0], np.float64([[1, 0, 9], [0, 1, 5]]), (64, 64), borderMode=cv2.BORDER_REPLICATE
    )
    write_video(clip / "high.mkv", np.stack([high[0], moved, high[2]]), 25, lossless=True)
    points = np.random.default_rng(0).uniform(16, 48, (68, 2))
    jitter = points + [2.0, -1.5]  # the landmarks' fit would move frame 2, the registration says still
    meta = json.loads((clip / "meta.json").read_text())
    meta.update(size=64, landmarks_high=[points.tolist(), (points - 30).tolist(), jitter.tolist()])
    (clip / "meta.json").write_text(json.dumps(meta))
    still, shifted = [1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 9 / 64, 5 / 64]  # tx, ty in image sides
    (clip / "motion.csv").write_text(motion_csv_text(HeadMotion(np.array([still, shifted, still]))))
    aligning = {"unet.image_size": 64, "training.align_targets": True}
    dataset = FrameDataset(
        read_manifest(data), tiny_config(**aligning, **{"training.target_motion": "registered"})
    )
    inner = (slice(12, 52), slice(12, 52))
    back = dataset.sample(1, flip=False).target
    assert np.abs(back[inner].astype(int) - high[0][inner].astype(int)).max() <= 2
    assert (dataset.sample(2, flip=False).target == high[2]).all()
    landmarks = FrameDataset(read_manifest(data), tiny_config(**aligning))
    assert not (landmarks.sample(2, flip=False).target == high[2]).all()
    (clip / "motion.csv").unlink()
    refit = FrameDataset(
        read_manifest(data), tiny_config(**aligning, **{"training.target_motion": "registered"})
    )
    assert not (refit.sample(2, flip=False).target == high[2]).all()


def test_resume_takes_new_sampling_defaults(data_dir, tmp_path):
    """Sampling defaults do not touch training: a resume with other ones is accepted and stores them."""
    first = run_cli("train", data_dir, "-o", tmp_path / "run", *SMALL_SET, "--max-steps", 2, "--quiet")
    assert first.exit_code == 0, first.output
    result = run_cli(
        "train", data_dir, "-o", tmp_path / "run", *SMALL_SET, "--set", "sampling.steps=3",
        "--set", "sampling.shared_noise=true", "--max-steps", 3, "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sampling = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["config"]["sampling"]
    assert sampling["steps"] == 3 and sampling["shared_noise"] is True


@pytest.mark.slow
def test_init_fine_tunes_from_a_model_with_its_config(data_dir, tmp_path):
    """--init starts a new run from another model's EMA weights and config (--set on top); a rerun resumes
    the new run; weights that do not fit the asked-for config are refused in one line."""
    first = run_cli("train", data_dir, "-o", tmp_path / "a", *SMALL_SET, "--max-steps", 3, "--quiet")
    assert first.exit_code == 0, first.output
    source = torch.load(tmp_path / "a" / "final.pt", weights_only=True)
    cmd = ["train", data_dir, "-o", tmp_path / "b", "--init", tmp_path / "a", "--quiet"]
    tuned = run_cli(*cmd, "--set", "conditioning.paste_detail_sigma=1.5", "--max-steps", 1)
    assert tuned.exit_code == 0, tuned.output
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert state["training"]["step"] == 1  # a new run: its own step count
    assert state["config"]["unet"] == source["config"]["unet"]  # the init model's network, not the preset's
    assert state["config"]["conditioning"]["paste_detail_sigma"] == 1.5
    # One optimiser step at the tiny lr moves the weights only a little from the init's.
    key = next(k for k, v in source["ema"].items() if v.is_floating_point() and v.numel() > 100)
    moved = (state["training"]["model"][key].float() - source["ema"][key].float()).abs().max()
    assert 0 < moved < 0.05
    wider = run_cli("train", data_dir, "-o", tmp_path / "c", "--init", tmp_path / "a", *SMALL_SET,
                    "--set", "unet.base_channels=16", "--max-steps", 1, "--quiet")  # fmt: skip
    assert wider.exit_code == 2 and "does not fit this run's config" in wider.output
    assert not (tmp_path / "c" / "last.pt").exists()
    shutil.rmtree(tmp_path / "a")  # the init model is not needed to resume
    again = run_cli(*cmd, "--set", "conditioning.paste_detail_sigma=1.5", "--max-steps", 2)
    assert again.exit_code == 0, again.output  # the same command resumes
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["training"]["step"] == 2
    other = run_cli(*cmd, "--set", "conditioning.paste_detail_sigma=1.0", "--max-steps", 3)
    assert other.exit_code == 2 and "another config" in other.output  # a changed --set is still refused


def test_relative_loss_scale_trains_an_edm_model(data_dir, tmp_path):
    """training.loss_scale = relative runs end to end on an EDM, edit-masked model and changes the loss it
    reports (the same batches, noise and weights at step 0)."""
    edm = {
        "unet.use_prev_frame": False, "unet.identity_skip": True, "unet.use_pasted_frame": True,
        "unet.use_edit_mask": True, "diffusion.prediction": "x0", "diffusion.loss": "x0",
        "diffusion.preconditioning": "edm", "diffusion.sigma_data": 0.2, "training.max_steps": 2,
        "training.log_every": 1, "training.validate_every": 2,
    }  # fmt: skip
    losses = {}
    for scale in ("mse", "relative"):
        config = tiny_config(**edm, **{"training.loss_scale": scale})
        train(TrainOptions(data_dir, tmp_path / scale, config))
        log = [json.loads(line) for line in (tmp_path / scale / "log.jsonl").read_text().splitlines()]
        losses[scale] = [r["loss"] for r in log if "loss" in r]
        assert all(np.isfinite(losses[scale])) and any("val_loss" in r for r in log)
    assert losses["mse"][0] != pytest.approx(losses["relative"][0], rel=1e-3)


@pytest.mark.slow
def test_sigterm_saves_a_resumable_checkpoint(data_dir, tmp_path):
    """SIGTERM (a scheduler's pre-emption notice) finishes the step, saves last.pt and exits 130."""
    import signal
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "facenhance_cli", "train", data_dir, "-o", run, *SMALL_SET,
           "--max-steps", 100000, "--set", "training.log_every=1", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(list(map(str, cmd)), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "log.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "train stopped before it could be signalled"
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "rerun the same command to resume" in stderr
    saved = torch.load(run / "last.pt", weights_only=True)
    assert saved["training"]["step"] >= 1


def test_max_minutes_stops_early_with_a_resumable_checkpoint(data_dir, tmp_path):
    """--max-minutes stops between steps once the time is up: last.pt and final.pt are saved at the step
    reached, and the same command resumes from it; a non-finite limit is refused in one line."""
    cmd = ["train", data_dir, "-o", tmp_path / "run", *SMALL_SET, "--max-steps", 100000, "--quiet"]
    result = run_cli(*cmd, "--max-minutes", 0.002)
    assert result.exit_code == 0, result.output
    step = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["training"]["step"]
    assert 0 < step < 100000 and (tmp_path / "run" / "final.pt").is_file()
    again = run_cli(*cmd, "--max-minutes", 0.002)
    assert again.exit_code == 0, again.output
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["training"]["step"] > step
    bad = run_cli(*cmd, "--max-minutes", "nan")
    assert bad.exit_code == 2 and "--max-minutes" in bad.output and "Traceback" not in bad.output
