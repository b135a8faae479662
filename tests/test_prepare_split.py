"""Issue 12: the subject split is drawn over the clips that were prepared, not over every input found,
and an empty train or test split is explained (prepare's summary, train's error)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import make_prepared_dataset
from typer.testing import CliRunner

from facenhance_cli import prepare as prep
from facenhance_cli.cli import app

runner = CliRunner()


@pytest.fixture
def fake_prepare(monkeypatch):
    """process_clip without a face detector: files named *bad* fail (as a corrupt clip), the rest succeed."""

    def process_clip(source, out_dir, options, detector=None, on_frame=None):
        result = prep.ClipResult(source.clip_id, str(source.path), source.subject, None, "failed")
        if "bad" in source.clip_id:
            result.reason = f"cannot read video {source.path}: Invalid data found when processing input"
            return result
        folder = out_dir / source.clip_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").write_text("{}")
        result.status, result.n_frames = "ok", 4
        return result

    import facenhance_cli.faces as faces

    monkeypatch.setattr("facenhance_cli.prepare.batch.process_clip", process_clip)
    monkeypatch.setattr(faces, "default_detector", lambda *a, **k: None)


def four_good_four_corrupt(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        (folder / f"g{i}_good.mp4").write_bytes(b"stand-in")
        (folder / f"b{i}_bad.mp4").write_bytes(b"corrupt")
    return folder


def split_of(out: Path) -> dict:
    return json.loads((out / "split.json").read_text())


def test_split_assigns_only_subjects_with_a_prepared_clip(tmp_path, fake_prepare):
    videos = four_good_four_corrupt(tmp_path / "in")
    out = tmp_path / "data"
    result = runner.invoke(app, ["prepare", str(videos), "-o", str(out)])
    assert result.exit_code == 0, result.output
    split = split_of(out)
    assert sorted(split["train"] + split["test"]) == ["g0", "g1", "g2", "g3"]
    assert len(split["train"]) == 3 and len(split["test"]) == 1
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows if r["status"] == "failed"} == {"unassigned"}
    assert "warning" not in result.output


def test_a_split_drawn_before_knowing_the_failures_is_drawn_again(tmp_path, fake_prepare):
    videos = four_good_four_corrupt(tmp_path / "in")
    out = tmp_path / "data"
    out.mkdir()
    # What an older facenhance wrote: the failing subjects in train, the good ones in test.
    prep.write_split(
        out / "split.json",
        {**{f"b{i}": "train" for i in range(4)}, **{f"g{i}": "test" for i in range(4)}},
        0.75,
        0,
    )
    result = runner.invoke(app, ["prepare", str(videos), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "drawn again" in result.output
    split = split_of(out)
    assert len(split["train"]) == 3 and set(split["train"]) <= {"g0", "g1", "g2", "g3"}
    # and a rerun keeps it
    runner.invoke(app, ["prepare", str(videos), "-o", str(out)])
    assert split_of(out) == split


def test_an_empty_split_is_explained_in_prepares_summary(tmp_path, fake_prepare):
    videos = tmp_path / "in"
    videos.mkdir()
    (videos / "g0_good.mp4").write_bytes(b"x")
    (videos / "b0_bad.mp4").write_bytes(b"x")
    result = runner.invoke(app, ["prepare", str(videos), "-o", str(tmp_path / "one"), "--split", "0"])
    assert result.exit_code == 0
    assert "warning: the train split is empty" in result.output and "`train` cannot run" in result.output
    result = runner.invoke(app, ["prepare", str(videos), "-o", str(tmp_path / "two")])
    assert result.exit_code == 0
    assert "warning: the test split is empty (only one subject was prepared)" in result.output


def test_train_says_why_the_train_split_is_empty_and_what_to_do(tmp_path):
    data = make_prepared_dataset(tmp_path / "data", n_train=0, n_test=2, n_frames=2, size=32)
    result = runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "run"), "--preset", "tiny"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "no clips in the train split" in lines[0] and "2 subject(s) in test" in lines[0]
    assert "rerun `facenhance prepare" in lines[0] and "--split-file" in lines[0]
    assert not (tmp_path / "run").exists()
