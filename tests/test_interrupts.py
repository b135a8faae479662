"""Issue 25: a signal ends a blocked read like any other: SIGTERM (or Ctrl-C) while ffmpeg waits on an
input (a FIFO with no writer) is exit 130 and the batch stops, with nothing half-written, instead of
"Interrupted system call" failing that one video while the batch goes on."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import save_tiny_model, synthetic_clip, write_low_clip
from typer.testing import CliRunner

from facenhance_cli.cli import app
from facenhance_cli.video import write_video

SIZE = 32


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), SIZE)


def _batch(folder: Path) -> list[Path]:
    """folder/{a,b,c}.mp4 (b is the one whose read is interrupted) and folder/id.png."""
    write_low_clip(folder, 2, SIZE)
    videos = []
    for n, name in enumerate("abc"):
        write_video(folder / f"{name}.mp4", synthetic_clip(2, size=SIZE, seed=n)[1], 25)
        videos.append(folder / f"{name}.mp4")
    return videos


def test_an_interrupted_read_stops_the_batch_with_130(model_path, tmp_path, monkeypatch):
    """PyAV reports a read cut short by a signal as av.error.InterruptedError (EINTR): the run ends as for
    Ctrl-C (exit 130, one line), the videos after it are not started, nothing temporary is left."""
    import av

    videos = _batch(tmp_path)
    real_open = av.open

    def open_(path, *args, **kwargs):
        if str(path).endswith("b.mp4"):
            raise av.error.InterruptedError(-errno.EINTR, "Interrupted system call", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(av, "open", open_)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["enhance", *map(str, videos), "-i", str(tmp_path / "id.png"), "-o", str(out),
              "-m", str(model_path), "--batch-videos", "1"],
    )  # fmt: skip
    assert result.exit_code == 130, result.output
    assert result.output.strip().splitlines()[-1] == "error: interrupted"
    assert "Interrupted system call" not in result.output
    assert not (out / "c.mp4").exists() and not (out / "b.mp4").exists()
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_a_signal_a_library_swallowed_still_stops_the_batch(model_path, tmp_path, monkeypatch):
    """The CLI's SIGTERM handler records the signal: a batch stops before its next input even when the
    KeyboardInterrupt it raised was lost inside a library."""
    import facenhance_cli.errors as errors

    videos = _batch(tmp_path)
    monkeypatch.setattr(errors, "_signals_received", [signal.SIGTERM])
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["enhance", *map(str, videos), "-i", str(tmp_path / "id.png"), "-o", str(out),
              "-m", str(model_path)],
    )  # fmt: skip
    assert result.exit_code == 130 and "error: interrupted" in result.output
    assert not list(out.glob("*.mp4"))


def test_an_interrupted_os_error_anywhere_is_exit_130():
    import typer

    from facenhance_cli.cli.common import handle_errors

    @handle_errors
    def command() -> None:
        raise InterruptedError(errno.EINTR, "Interrupted system call")

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 130


def _blocked_on_a_fifo(pid: int) -> bool:
    try:
        return (
            "fifo" in Path(f"/proc/{pid}/wchan").read_text()
            or "partner" in Path(f"/proc/{pid}/wchan").read_text()
        )
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_sigterm_while_a_read_blocks_on_a_fifo(model_path, tmp_path):
    """The real thing: the second input is a FIFO nobody writes to; SIGTERM while ffmpeg waits on it."""
    videos = _batch(tmp_path)
    fifo = tmp_path / "b.mp4"
    fifo.unlink()
    os.mkfifo(fifo)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "facenhance_cli", "enhance", *videos, "-i", tmp_path / "id.png", "-o", out,
           "-m", model_path, "--batch-videos", "1", "--backend", "torch"]  # fmt: skip
    proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while not _blocked_on_a_fifo(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    if not _blocked_on_a_fifo(proc.pid):  # no /proc wchan here: give it time to reach the FIFO
        time.sleep(5)
    os.kill(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted" and "Interrupted system" not in stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4"]  # c.mp4 never started, nothing temporary
