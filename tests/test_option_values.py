"""Option values out of range or not finite: one line, exit 2, before any model loads or clip is touched
(issue 25's failures, kept as fixed cases)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from facenhance_cli.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NO_MODEL = "/nonexistent/model.pt"  # a check that ran after the model loads would say "not found" instead


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_usage_error(result, flag: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in result.output, result.output


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--eta", "nan"),
        ("--eta", "inf"),
        ("--eta", "1e30"),
        ("--eta", "-1"),
        ("--strength", "nan"),
        ("--strength", "0"),
    ],
)
def test_enhance_refuses_sampling_values_before_the_model_loads(tmp_path, flag, value):
    out = tmp_path / "out.mp4"
    args = [EXAMPLES / "low.mp4", "--identity", EXAMPLES / "neutral.png", "-o", out, "--model", NO_MODEL]
    assert_usage_error(run("enhance", *args, flag, value), flag)
    assert not out.exists()


@pytest.mark.parametrize("shard,words", [("0/0", "at least 1"), ("3/2", "0..N-1"), ("x", "K/N")])
def test_enhance_shard_messages_say_what_is_wrong(tmp_path, shard, words):
    args = [EXAMPLES / "low.mp4", "--identity", EXAMPLES / "neutral.png", "-o", tmp_path / "o.mp4"]
    result = run("enhance", *args, "--model", NO_MODEL, "--shard", shard)
    assert_usage_error(result, "--shard")
    assert words in result.output


@pytest.mark.parametrize(
    "args,flag",
    [
        (["--split", "1.5"], "--split"),
        (["--split", "-0.5"], "--split"),
        (["--split", "nan"], "--split"),
        (["--segment", "10:5"], "--segment"),
        (["--crop-scale", "inf"], "--crop-scale"),
        (["--max-missing", "2"], "--max-missing"),
    ],
)
def test_prepare_refuses_values_before_any_clip(tmp_path, args, flag):
    out = tmp_path / "data"
    assert_usage_error(run("prepare", EXAMPLES / "low.mp4", "-o", out, *args), flag)
    assert not out.exists()  # nothing prepared, no clip folder without manifest.jsonl or split.json


@pytest.mark.parametrize("args", [["--crop-scale", "nan"], ["--size", "0"], ["--crop-scale", "inf"]])
def test_prepare_identity_only_checks_its_values_too(tmp_path, args):
    """Found by the fuzz (tests/test_fuzz_cli.py, seed 26 case 658): --identity-only skipped the checks,
    and --crop-scale nan was an internal error."""
    out = tmp_path / "me.png"
    result = run("prepare", EXAMPLES / "neutral.png", "--identity-only", "-o", out, *args)
    assert_usage_error(result, args[0])
    assert not out.exists()


@pytest.mark.parametrize("lr", ["nan", "inf", "-1"])
def test_train_refuses_a_learning_rate_that_is_not_a_positive_number(tmp_path, lr):
    data = tmp_path / "data"
    data.mkdir()
    result = run("train", data, "-o", tmp_path / "run", "--preset", "tiny", "--lr", lr)
    assert result.exit_code == 2, result.output
    assert (
        "lr" in result.output and "internal error" not in result.output and "Traceback" not in result.output
    )
    assert not (tmp_path / "run").exists()


def test_a_pairs_csv_with_a_byte_order_mark_is_read(tmp_path):
    """A spreadsheet's "CSV UTF-8" export starts with a BOM: the first column is still `low`."""
    from facenhance_cli.enhance import plan_jobs

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("low,identity,output\nlow.mp4,neutral.png,out.mp4\n", encoding="utf-8-sig")
    jobs = plan_jobs([], None, None, pairs, lossless=False)
    assert [job.low.name for job in jobs] == ["low.mp4"]


def test_eval_reads_a_pairs_csv_with_a_byte_order_mark(tmp_path):
    from facenhance_cli.evaluation.pairing import read_pairs_csv

    pairs = tmp_path / "pairs.csv"
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "b.mp4").write_bytes(b"")
    pairs.write_text("gen,gt\na.mp4,b.mp4\n", encoding="utf-8-sig")
    assert [pair.gen.name for pair in read_pairs_csv(pairs)] == ["a.mp4"]


# -- paths that are not what the option expects: said in our words, not the OS's -----------------------


def test_an_output_under_a_file_says_the_file_is_not_a_folder(tmp_path):
    from helpers import save_tiny_model

    (tmp_path / "afile").write_text("a file, not a folder\n")
    model = save_tiny_model(tmp_path)
    cases = {
        "enhance": [EXAMPLES / "low.mp4", "-i", EXAMPLES / "neutral.png", "-o", tmp_path / "afile" / "x.mp4",
                    "--model", NO_MODEL],
        "export": [model, "-o", tmp_path / "afile" / "m.pt"],
        "prepare": [EXAMPLES / "low.mp4", "-o", tmp_path / "afile" / "data"],
        "train": [tmp_path, "-o", tmp_path / "afile" / "run", "--preset", "tiny"],
    }  # fmt: skip
    for command, args in cases.items():
        result = run(command, *args)
        assert result.exit_code == 2, (command, result.output)
        assert f"{tmp_path / 'afile'} is a file, not a folder" in result.output, (command, result.output)
        assert "File exists" not in result.output and "Not a directory" not in result.output
    assert (tmp_path / "afile").read_text() == "a file, not a folder\n"


def test_eval_says_a_device_is_not_a_video_folder(tmp_path):
    """Found by the fuzz (seed 25 case 187): `eval /dev/null` said "Not a directory: /dev/null"."""
    data = tmp_path / "data"
    data.mkdir()
    result = run("eval", "/dev/null", "--gt", data, "--metrics", "psnr", "--baseline", "none")
    assert result.exit_code == 1, result.output
    assert (
        result.output.strip()
        == "error: gen input /dev/null is not a regular file (a FIFO or a device): give a video"
    )


def test_a_folder_given_as_the_identity_image_says_so(tmp_path):
    result = run(
        "enhance", EXAMPLES / "low.mp4", "-i", tmp_path, "-o", tmp_path / "o.mp4", "--model", NO_MODEL
    )
    assert result.exit_code == 1, result.output
    assert result.output.strip() == f"error: {tmp_path} is a folder, not an identity image file"


@pytest.mark.parametrize(
    "args,flag",
    [
        # Found by the fuzz (seed 25 case 349, before these limits): --size 100000 was an internal error.
        (["--frames", "100000"], "--frames"),  # every clip is held in memory: 100000 frames is 11 GB
        (["--size", "100000"], "--size"),
        (["--low-size", "100000"], "--low-size"),
        (["--workers", "100000"], "--workers"),
    ],
)
def test_prepare_refuses_values_too_large_to_be_meant(tmp_path, args, flag):
    out = tmp_path / "data"
    assert_usage_error(run("prepare", EXAMPLES / "low.mp4", "-o", out, *args), flag)
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["enhance", EXAMPLES / "low.mp4", "-i", EXAMPLES / "neutral.png", "-o", "o.mp4", "--model", NO_MODEL],
        ["train", EXAMPLES, "-o", "run"],
        ["eval", EXAMPLES / "low.mp4", "--gt", EXAMPLES / "ground_truth.mp4"],
    ],
)
def test_threads_beyond_1024_are_a_usage_error(tmp_path, monkeypatch, args):
    """Each thread is an OS thread: --threads 1000000 would start a million of them."""
    monkeypatch.chdir(tmp_path)
    result = run(*args, "--threads", "1000000")
    assert result.exit_code == 2 and "--threads" in result.output and "1024" in result.output
    assert not list(tmp_path.iterdir())
