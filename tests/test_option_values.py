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
