"""Issue 12: no command writes over one of its inputs, a full or read-only disk fails early in one line,
and a failed checkpoint write leaves the previous one loadable and resumable."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
from helpers import make_prepared_dataset, save_tiny_model, synthetic_clip, write_low_clip
from typer.testing import CliRunner

from facenhance_cli.checkpoint import read_checkpoint, save_checkpoint
from facenhance_cli.cli import app
from facenhance_cli.config import load_preset
from facenhance_cli.nn.unet import build_network
from facenhance_cli.video import write_image, write_video

SIZE = 32


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), SIZE)


@pytest.fixture
def clip(tmp_path):
    return write_low_clip(tmp_path, 3, SIZE)


def run(*args):
    return CliRunner().invoke(app, [*map(str, args)])


def one_error_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    return lines[0]


def digest(path: Path) -> bytes:
    return path.read_bytes()


@pytest.mark.parametrize("flags", [["--overwrite"], []])
def test_enhance_refuses_its_input_as_output(model_path, clip, flags):
    before = digest(clip / "in.mp4")
    result = run(
        "enhance", clip / "in.mp4", "-i", clip / "id.png", "-o", clip / "in.mp4", "-m", model_path, *flags
    )
    assert result.exit_code == 2
    assert "refusing to write over an input" in one_error_line(result)
    assert digest(clip / "in.mp4") == before


def test_enhance_refuses_a_hard_link_a_symlink_and_a_dotted_path_to_its_input(model_path, clip):
    before = digest(clip / "in.mp4")
    os.link(clip / "in.mp4", clip / "hard.mp4")
    os.symlink(clip / "in.mp4", clip / "soft.mp4")
    (clip / "sub").mkdir()
    for out in (clip / "hard.mp4", clip / "soft.mp4", clip / "sub" / ".." / "in.mp4"):
        result = run(
            "enhance", clip / "in.mp4", "-i", clip / "id.png", "-o", out, "-m", model_path, "--overwrite"
        )
        assert result.exit_code == 2, (out, result.output)
        assert "input" in one_error_line(result)
    assert digest(clip / "in.mp4") == before


def test_enhance_refuses_to_write_over_the_identity_or_another_jobs_input(model_path, clip):
    write_video(clip / "out" / "b.mp4", synthetic_clip(2, size=SIZE, seed=2)[1], 25)
    before = digest(clip / "out" / "b.mp4")
    # in.mp4 -> out/in.mp4, out/b.mp4 -> out/b.mp4: the second job would replace its own input
    result = run(
        "enhance",
        clip / "in.mp4",
        clip / "out" / "b.mp4",
        "-i",
        clip / "id.png",
        "-o",
        clip / "out",
        "-m",
        model_path,
        "--overwrite",
    )
    assert result.exit_code == 2 and "out/b.mp4" in one_error_line(result)
    assert digest(clip / "out" / "b.mp4") == before
    assert not (clip / "out" / "in.mp4").exists()  # refused before any work


def test_enhance_compare_and_frames_never_replace_an_input(model_path, clip):
    write_video(clip / "o_compare.mp4", synthetic_clip(2, size=SIZE, seed=2)[1], 25)
    result = run(
        "enhance",
        clip / "o_compare.mp4",
        "-i",
        clip / "id.png",
        "-o",
        clip / "o.mp4",
        "-m",
        model_path,
        "--compare",
    )
    assert result.exit_code == 2 and "o_compare.mp4" in one_error_line(result)
    frames = clip / "o_frames"
    frames.mkdir()
    write_image(frames / "0001.png", synthetic_clip(1, size=64, seed=3)[1][0])
    result = run(
        "enhance",
        frames,
        "-i",
        clip / "id.png",
        "-o",
        clip / "o.mp4",
        "-m",
        model_path,
        "--save-frames",
        "--overwrite",
    )
    assert result.exit_code == 2 and "o_frames" in one_error_line(result)
    assert (frames / "0001.png").is_file()


def test_export_refuses_its_source_and_a_resumable_checkpoint(tmp_path):
    config = load_preset("tiny").replace(**{"unet.image_size": SIZE})
    net = build_network(config)
    training = {"model": net.state_dict(), "optimizer": {}, "scaler": None, "step": 3, "best_val": None}
    run_dir = tmp_path / "run"
    save_checkpoint(run_dir / "last.pt", config, net.state_dict(), {"step": 3}, training)
    save_checkpoint(run_dir / "final.pt", config, net.state_dict(), {"step": 3})
    before = digest(run_dir / "last.pt")
    for args in (
        [run_dir / "last.pt", "-o", run_dir / "last.pt"],
        [run_dir / "last.pt", "-o", run_dir / "last.pt", "--overwrite"],
        [run_dir, "-o", run_dir / "final.pt", "--overwrite"],  # the run folder resolves to final.pt
        [run_dir / "final.pt", "-o", run_dir / "last.pt", "--overwrite"],  # resumable: never replaced
        [run_dir / "final.pt", "-o", run_dir / "last.pt"],
    ):
        result = run("export", *args)
        assert result.exit_code == 2, (args, result.output)
        one_error_line(result)
    assert digest(run_dir / "last.pt") == before
    assert "training" in read_checkpoint(run_dir / "last.pt")
    ok = run("export", run_dir / "last.pt", "-o", tmp_path / "model.pt")
    assert ok.exit_code == 0 and "wrote" in ok.output
    assert run("export", run_dir / "last.pt", "-o", tmp_path / "model.pt").exit_code == 2  # exists
    assert run("export", run_dir / "last.pt", "-o", tmp_path / "model.pt", "--overwrite").exit_code == 0


def test_eval_refuses_a_report_over_its_pairs_file_or_a_video(tmp_path):
    data = make_prepared_dataset(tmp_path / "data", n_train=0, n_test=1, n_frames=3, size=SIZE)
    gen = data / "s00_clip" / "high.mkv"
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"gen,gt\n{gen},{gen}\n")
    before = pairs.read_bytes()
    result = run("eval", "--pairs", pairs, "--csv", pairs, "--metrics", "psnr", "--baseline", "none")
    assert result.exit_code == 2 and "pairs.csv" in one_error_line(result)
    assert pairs.read_bytes() == before
    result = run("eval", gen, "--gt", data, "--json", gen, "--metrics", "psnr", "--baseline", "none")
    assert result.exit_code == 2 and "high.mkv" in one_error_line(result)


def test_prepare_refuses_to_write_over_its_input(tmp_path):
    photo = tmp_path / "me.png"
    write_image(photo, synthetic_clip(1, size=SIZE)[2])
    before = digest(photo)
    result = run("prepare", photo, "--identity-only", "-o", photo)
    assert result.exit_code == 2 and "input" in one_error_line(result)
    assert digest(photo) == before
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "s01_a.mp4", synthetic_clip(2, size=SIZE)[1], 25)
    result = run("prepare", videos, "-o", videos / "prepared")
    assert result.exit_code == 2 and "inside the input" in one_error_line(result)
    assert not (videos / "prepared").exists()


def test_train_refuses_the_data_folder_as_its_run_folder(tmp_path):
    data = make_prepared_dataset(tmp_path / "data", n_frames=2, size=SIZE)
    result = run("train", data, "-o", data, "--preset", "tiny", "--max-steps", "1", "--device", "cpu")
    assert result.exit_code == 2 and "data folder" in one_error_line(result)


# -- full or read-only disks ----------------------------------------------------------------------------


def _fail_probe(code):
    def mkstemp(*args, **kwargs):
        raise OSError(code, os.strerror(code), kwargs.get("dir"))

    return mkstemp


@pytest.mark.parametrize(
    "code,words",
    [(errno.EROFS, "read-only"), (errno.ENOSPC, "disk full"), (errno.EACCES, "permission denied")],
)
def test_enhance_checks_the_output_folder_before_loading_the_model(
    model_path, clip, monkeypatch, code, words
):
    import facenhance_cli.checkpoint as ckpt
    import facenhance_cli.fileio as fileio

    monkeypatch.setattr(fileio.tempfile, "mkstemp", _fail_probe(code))
    monkeypatch.setattr(ckpt, "load_for_inference", lambda *a, **k: pytest.fail("the model was loaded"))
    result = run(
        "enhance", clip / "in.mp4", "-i", clip / "id.png", "-o", clip / "out" / "o.mp4", "-m", model_path
    )
    assert result.exit_code == 1
    line = one_error_line(result)
    assert words in line and str(clip / "out") in line and "(on /" in line  # the folder and its disk
    assert not (clip / "out").exists()  # the folder the probe made is gone again


@pytest.mark.parametrize("which", ["low", "identity"])
def test_enhance_checks_every_input_before_loading_the_model(model_path, clip, monkeypatch, which):
    import facenhance_cli.checkpoint as ckpt

    monkeypatch.setattr(ckpt, "load_for_inference", lambda *a, **k: pytest.fail("the model was loaded"))
    lows = [clip / "in.mp4", *([clip / "nope.mp4"] if which == "low" else [])]
    identity = clip / ("nope.png" if which == "identity" else "id.png")
    result = run("enhance", *lows, "-i", identity, "-o", clip / "out", "-m", model_path)
    assert result.exit_code == 1
    assert "not found" in one_error_line(result) and "nope" in result.output
    assert not (clip / "out" / "in.mp4").exists()


def _torch_save_fails_like_a_full_disk(monkeypatch):
    """torch.save writes part of the file, then raises what torch raises on ENOSPC."""
    import shutil

    import facenhance_cli.checkpoint as ckpt
    import facenhance_cli.fileio as fileio

    def save(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1024 vs 960\nmore")

    monkeypatch.setattr(ckpt.torch, "save", save)
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: usage._replace(free=0))


def test_export_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    config = load_preset("tiny").replace(**{"unet.image_size": SIZE})
    save_checkpoint(tmp_path / "final.pt", config, build_network(config).state_dict())
    _torch_save_fails_like_a_full_disk(monkeypatch)
    result = run("export", tmp_path / "final.pt", "-o", tmp_path / "out" / "m.pt")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "disk full" in line and str(tmp_path / "out" / "m.pt") in line and "free" in line
    assert "internal error" not in line and "enforce" not in line
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.slow
def test_train_on_a_full_disk_keeps_last_pt_resumable(tmp_path, monkeypatch):
    data = make_prepared_dataset(tmp_path / "data", n_train=1, n_test=0, n_frames=2, size=SIZE)
    args = ["train", data, "-o", tmp_path / "run", "--preset", "tiny", "--device", "cpu", "-q",
            "--set", f"unet.image_size={SIZE}", "--batch-size", "1"]  # fmt: skip
    assert run(*args, "--max-steps", "1").exit_code == 0
    before = digest(tmp_path / "run" / "last.pt")
    with monkeypatch.context() as m:
        _torch_save_fails_like_a_full_disk(m)
        result = run(*args, "--max-steps", "2")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "disk full" in line and "last.pt" in line and "internal error" not in line
    assert digest(tmp_path / "run" / "last.pt") == before
    assert read_checkpoint(tmp_path / "run" / "last.pt")["training"]["step"] == 1
    assert not [p for p in (tmp_path / "run").iterdir() if ".tmp" in p.name]
    assert run(*args, "--max-steps", "2").exit_code == 0  # and it resumes
    assert read_checkpoint(tmp_path / "run" / "last.pt")["training"]["step"] == 2


def test_a_failed_torch_save_removes_its_temporary_file(tmp_path, monkeypatch):
    from facenhance_cli.errors import CheckpointError

    config = load_preset("tiny").replace(**{"unet.image_size": SIZE})
    state = build_network(config).state_dict()
    save_checkpoint(tmp_path / "last.pt", config, state, {"step": 1})
    before = digest(tmp_path / "last.pt")
    _torch_save_fails_like_a_full_disk(monkeypatch)
    with pytest.raises(CheckpointError, match="disk full"):
        save_checkpoint(tmp_path / "last.pt", config, state, {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert digest(tmp_path / "last.pt") == before
    torch.load(tmp_path / "last.pt", weights_only=True)
