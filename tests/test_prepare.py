"""`facenhance prepare`: segments, inputs, split, the per-clip outputs, resume, bad inputs and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import require_weight_file
from typer.testing import CliRunner

from facenhance_cli import prepare as prep
from facenhance_cli.cli import app
from facenhance_cli.errors import InputError, UsageError

HAPPY = "clips/b01_dreamtalk-mead_M030_front_happy_level3_001.mp4"
SAD = "clips/b02_dreamtalk-mead_W009_front_sad_level3_001.mp4"
runner = CliRunner()


# ------------------------------------------------------------------------------------------------ pieces


def test_segments_and_resampling():
    assert prep.parse_segment("all", 10) == (0, 10)
    assert prep.parse_segment("first-half", 11) == (0, 6)
    assert prep.parse_segment("2:5", 10) == (2, 5)
    assert prep.parse_segment(":-2", 10) == (0, 8)
    assert prep.parse_segment("4:", 10) == (4, 10)
    with pytest.raises(UsageError):
        prep.parse_segment("middle", 10)
    with pytest.raises(InputError):
        prep.parse_segment("8:3", 10)
    assert prep.resample_indices(0, 64, 32) == [round(i * 63 / 31) for i in range(32)]
    assert prep.resample_indices(0, 4, 8) == [0, 0, 1, 1, 2, 2, 3, 3]  # short segments repeat frames
    assert prep.resample_indices(5, 6, 3) == [5, 5, 5]


def test_split_is_subject_independent_deterministic_and_roundtrips(tmp_path):
    subjects = [f"s{i:02d}" for i in range(52)]
    split = prep.make_split(subjects, 0.75, seed=3)
    assert sum(v == "train" for v in split.values()) == 39  # the paper's 39 / 13
    assert split == prep.make_split(list(reversed(subjects)), 0.75, seed=3)  # order-independent
    assert split != prep.make_split(subjects, 0.75, seed=4)
    prep.write_split(tmp_path / "split.json", split, 0.75, 3)
    assert prep.read_split(tmp_path / "split.json") == split
    (tmp_path / "split.txt").write_text("# subject split\na train\nb, test\n")
    assert prep.read_split(tmp_path / "split.txt") == {"a": "train", "b": "test"}
    (tmp_path / "bad.txt").write_text("a maybe\n")
    with pytest.raises(UsageError):
        prep.read_split(tmp_path / "bad.txt")
    two = prep.make_split(["x", "y"], 0.75, 0)
    assert sorted(two.values()) == ["test", "train"]  # both sides non-empty
    grown = prep.assign_split(subjects + ["new1", "new2"], 0.75, 3, split)
    assert all(grown[s] == split[s] for s in subjects)  # earlier assignments never move


def test_stored_high_landmarks_are_scaled_or_none(tmp_path):
    from facenhance_cli.prepare.clip import stored_high_landmarks

    meta = tmp_path / "meta.json"
    points = np.arange(2 * 68 * 2, dtype=np.float64).reshape(2, 68, 2)
    meta.write_text(json.dumps({"size": 192, "landmarks_high": points.tolist()}))
    np.testing.assert_allclose(stored_high_landmarks(meta, 96), points / 2)
    for broken in ('{"size": 192}', "not json", json.dumps({"size": 192, "landmarks_high": [[1, 2]]})):
        meta.write_text(broken)
        assert stored_high_landmarks(meta, 192) is None
    assert stored_high_landmarks(tmp_path / "missing.json", 192) is None


def test_discover_flat_names_manifest_and_regex(tmp_path):
    clips = tmp_path / "data" / "clips"
    clips.mkdir(parents=True)
    for name in ("b01_x_angry.mp4", "b01_y_happy.mp4", "M030_front_sad_level3.mp4", "plain.mp4"):
        (clips / name).write_bytes(b"")
    sources, errors = prep.discover_inputs([clips])
    by_id = {s.clip_id: s for s in sources}
    assert not errors
    assert by_id["b01_x_angry"].subject == "b01" and by_id["b01_x_angry"].expression == "anger"
    assert by_id["M030_front_sad_level3"].subject == "M030"
    assert by_id["M030_front_sad_level3"].expression == "sadness"
    assert by_id["plain"].subject == "plain" and by_id["plain"].expression is None
    # A manifest.csv one level up (as in ../shared/data/faces) wins over the prefix rule.
    (tmp_path / "data" / "manifest.csv").write_text(
        "id,file,person\nP7,clips/plain.mp4,a description\nP9,clips/b01_x_angry.mp4,x\n"
    )
    sources, _ = prep.discover_inputs([clips])
    by_id = {s.clip_id: s for s in sources}
    assert by_id["plain"].subject == "P7" and by_id["b01_x_angry"].subject == "P9"
    sources, _ = prep.discover_inputs([clips], subject_regex=r"_(?P<subject>front)_")
    assert {s.clip_id: s.subject for s in sources}["M030_front_sad_level3"] == "front"
    # Missing paths and lone images are reported, not fatal.
    (tmp_path / "photo.png").write_bytes(b"")
    _, errors = prep.discover_inputs([tmp_path / "nope.mp4", tmp_path / "photo.png"])
    assert len(errors) == 2 and "not found" in errors[0] and "--identity-only" in errors[1]


def test_discover_mug_layout(tmp_path):
    root = tmp_path / "MUG"
    for rel in ("001/happiness/take0", "001/anger/take1", "045/session1/surprise/take0"):
        (root / rel).mkdir(parents=True)
        (root / rel / "img_0001.jpg").write_bytes(b"")
    sources, errors = prep.discover_inputs([root])
    assert not errors
    got = {(s.subject, s.expression, s.take) for s in sources}
    assert got == {("001", "happiness", "take0"), ("001", "anger", "take1"), ("045", "surprise", "take0")}
    assert len({s.clip_id for s in sources}) == 3
    assert all(s.fps == prep.MUG_FPS for s in sources)
    flat, _ = prep.discover_inputs([root], layout="flat")
    assert {s.subject for s in flat} == {"001", "045"}  # sub-folders of the root are subjects
    with pytest.raises(UsageError):
        prep.discover_inputs([root], layout="nope")


# ------------------------------------------------------------------------------------------------ fixtures


def _faceless_video(path: Path, n: int = 10) -> Path:
    from facenhance_cli.video import write_video

    yy, xx = np.mgrid[0:96, 0:128]
    frames = np.stack([np.stack([(xx + 3 * i) % 256, yy * 2, np.full_like(xx, 80)], -1) for i in range(n)])
    write_video(path, frames.astype(np.uint8), 25, lossless=True)
    return path


def _read(path: Path) -> np.ndarray:
    from facenhance_cli.video import read_video

    return read_video(path)[0]


@pytest.fixture(scope="module")
def batch(tmp_path_factory, faces_dir):
    """One CLI run: a real clip, a folder of 16-bit grayscale PNG frames, a corrupt file, a faceless video."""
    import cv2

    require_weight_file("dlib_landmarks68")  # fails under CI=true, like every missing third-party file
    base = tmp_path_factory.mktemp("prep")
    inputs = base / "in"
    inputs.mkdir()
    shutil.copy(faces_dir / HAPPY, inputs / Path(HAPPY).name)
    (inputs / "b90_corrupt.mp4").write_bytes(b"this is not a video" * 100)
    _faceless_video(inputs / "b91_noface.mkv")
    gray = cv2.cvtColor(cv2.imread(str(faces_dir / "neutral" / "b02_neutral.png")), cv2.COLOR_BGR2GRAY)
    frames = inputs / "b92_frames"
    frames.mkdir()
    for i in range(3):
        shifted = np.roll(gray, 2 * i, axis=1).astype(np.uint16) * 257  # 16-bit grayscale frames
        cv2.imwrite(str(frames / f"img_{i:04d}.png"), shifted)
    out = base / "out"
    result = runner.invoke(app, ["prepare", str(inputs), "-o", str(out), "--frames", "8", "--seed", "1"])
    return {"result": result, "out": out, "inputs": inputs}


def _manifest(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return {r["clip_id"]: r for r in rows}


# ------------------------------------------------------------------------------------------------ the batch


def test_batch_reports_bad_clips_and_prepares_the_rest(batch):
    result = batch["result"]
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    rows = _manifest(batch["out"])
    happy = Path(HAPPY).stem
    assert rows[happy]["status"] == "ok" and rows[happy]["n_frames"] == 8
    assert rows[happy]["subject"] == "b01" and rows[happy]["expression"] == "happiness"
    assert rows["b92_frames"]["status"] == "ok"
    assert rows["b90_corrupt"]["status"] == "failed" and "cannot read" in rows["b90_corrupt"]["reason"]
    assert rows["b91_noface"]["status"] == "failed" and "no face" in rows["b91_noface"]["reason"]
    for row in rows.values():  # the split is drawn over prepared subjects only (issue 12)
        assert row["split"] in ({"train", "test"} if row["status"] == "ok" else {"unassigned"})
        assert row["reason"] is None or "\n" not in row["reason"]
    assert not list(batch["out"].glob(".tmp-*"))
    assert not (batch["out"] / "b90_corrupt").exists()


def test_clip_files_sizes_and_counts(batch):
    clip = batch["out"] / Path(HAPPY).stem
    high, low = _read(clip / "high.mkv"), _read(clip / "low.mkv")
    assert high.shape == (8, 192, 192, 3) and low.shape == (8, 64, 64, 3)
    preview = _read(clip / "preview.mp4")
    assert preview.shape == (8, 192, 384, 3)
    from facenhance_cli.video import read_image

    identity = read_image(clip / "identity.png")
    np.testing.assert_array_equal(identity, high[0])  # lossless: the first selected frame
    meta = json.loads((clip / "meta.json").read_text())
    assert meta["frame_indices"] == prep.resample_indices(0, (94 + 1) // 2, 8)
    assert meta["landmark_backend"] == "dlib" and meta["detector"].startswith("dlib-hog")
    assert meta["template"].startswith("openface-pdm")
    assert np.array(meta["landmarks_low"]).shape == (8, 68, 2)
    assert np.array(meta["low_transforms"]).shape == (8, 2, 3)
    assert meta["versions"]["facenhance"]


def test_low_frames_black_outside_mask_and_face_inside(batch):
    from facenhance_cli import faces

    clip = batch["out"] / Path(HAPPY).stem
    low = _read(clip / "low.mkv")
    meta = json.loads((clip / "meta.json").read_text())
    template = faces.alignment_template()
    for frame, lms in zip(low, np.array(meta["landmarks_low"]), strict=True):
        mask = faces.face_mask(lms, 64, faces.BROW_RAISE_MM * faces.sim_scale_for(64))
        # meta landmarks are rounded to 0.01 px, so compare away from the mask's edge.
        import cv2

        inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        outer = ~cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert frame[outer].max() == 0
        assert frame[inner].mean() > 40 and (frame[inner].max(axis=-1) > 0).mean() > 0.99
        # Aligned landmarks near the template (bound justified in test_faces: 15% of the 26 px eye distance).
        dst = template.points * faces.sim_scale_for(64) + 32
        idx = list(faces.RIGID_POINTS)
        assert np.sqrt(((lms[idx] - dst[idx]) ** 2).sum(1).mean()) < 0.15 * 65.7 * 0.4


def test_high_crop_holds_the_face_and_does_not_jitter(batch):
    clip = batch["out"] / Path(HAPPY).stem
    meta = json.loads((clip / "meta.json").read_text())
    high_lms = np.array(meta["landmarks_high"])
    assert high_lms.min() > 0 and high_lms.max() < 191  # the face inside every crop
    x, y, side = meta["crop_box"]  # one box for the whole clip
    src = np.array(meta["landmarks_source"])
    assert (src[..., 0] > x).all() and (src[..., 0] < x + side).all()
    # The background is still: with one box, a corner patch barely changes between frames.
    high = _read(clip / "high.mkv").astype(np.float32)
    corner = high[:, :24, :24]
    assert np.abs(corner - corner[0]).mean() < 6.0


def test_steady_low_frames_move_only_with_the_registered_head(batch, tmp_path):
    """--low-alignment steady (the default): frame n's transform is A_0 B^-1 M_n^-1 B (A_0 frame 0's
    landmark alignment, B the high crop, M_n motion.csv's move), so a still photo moved across the frame
    (b92: shifted 2 px a frame) keeps its low face stiller than aligning each frame on its own landmarks."""
    from facenhance_cli import faces
    from facenhance_cli.motion import read_motion

    clip = batch["out"] / "b92_frames"
    meta = json.loads((clip / "meta.json").read_text())
    assert meta["low_alignment"] == "steady" and meta["settings"]["low_alignment"] == "steady"
    motion = read_motion(clip / "motion.csv", 8)
    assert motion.moves(192)  # the shift is registered
    box = faces.CropBox(*meta["crop_box"])
    to_high = np.vstack([faces.crop_matrix(box, 192), [0, 0, 1]])
    np.testing.assert_allclose(
        faces.box_to_crop(np.array([[10.0, 20.0]]), box, 192)[0], to_high[:2] @ [10, 20, 1]
    )
    first = faces.openface_align_matrix(np.array(meta["landmarks_source"][0]), faces.alignment_template(), 64)
    for n, matrix in enumerate(meta["low_transforms"]):
        move = np.vstack([motion.matrix(n, 192), [0, 0, 1]])
        steady = np.vstack([first, [0, 0, 1]]) @ np.linalg.inv(to_high) @ np.linalg.inv(move) @ to_high
        np.testing.assert_allclose(matrix, steady[:2], rtol=1e-3, atol=1e-3)  # meta and csv rounded
    (source,), _ = prep.discover_inputs([batch["inputs"] / "b92_frames"])
    options = prep.PrepareOptions(frames=8, low_alignment="landmarks")
    assert prep.process_clip(source, tmp_path, options).status == "ok"
    assert json.loads((tmp_path / "b92_frames" / "meta.json").read_text())["low_alignment"] == "landmarks"
    steady_low = _read(clip / "low.mkv").astype(np.float32)
    landmark_low = _read(tmp_path / "b92_frames" / "low.mkv").astype(np.float32)
    steady_change = np.abs(steady_low - steady_low[0]).mean()
    landmark_change = np.abs(landmark_low - landmark_low[0]).mean()
    assert steady_change < 0.7 * landmark_change, (steady_change, landmark_change)


def test_rerun_resumes_and_reports(batch):
    out = batch["out"]
    clip = out / Path(HAPPY).stem
    stamp = (clip / "meta.json").stat().st_mtime_ns
    result = runner.invoke(
        app, ["prepare", str(batch["inputs"]), "-o", str(out), "--frames", "8", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "done earlier" in result.output
    assert (clip / "meta.json").stat().st_mtime_ns == stamp
    assert _manifest(out)[Path(HAPPY).stem]["status"] == "ok"
    split = prep.read_split(out / "split.json")
    prepared = {r["subject"] for r in _manifest(out).values() if r["status"] == "ok"}
    assert prepared == set(split)  # subjects whose clips all failed take no place in the split


def test_incomplete_clip_folder_is_redone(tmp_path, faces_dir, require_weight):
    require_weight("dlib_landmarks68")
    src = faces_dir / HAPPY
    out = tmp_path / "out"
    half = out / src.stem
    half.mkdir(parents=True)
    (half / "high.mkv").write_bytes(b"partial")  # no meta.json: incomplete
    (out / ".tmp-stale-1234").mkdir()
    options = prep.PrepareOptions(frames=4, preview=False)
    report = prep.run_prepare([src], out, options)
    assert report.results[0].status == "ok" and not report.results[0].done_earlier
    assert _read(half / "high.mkv").shape[0] == 4
    assert not (out / ".tmp-stale-1234").exists()


def test_interrupt_leaves_no_half_written_clip(tmp_path, faces_dir, require_weight, monkeypatch):
    require_weight("dlib_landmarks68")
    from facenhance_cli.prepare import clip as clip_module

    real_write = clip_module._write_clip

    def write_then_interrupt(folder, *args, **kwargs):
        real_write(folder, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(clip_module, "_write_clip", write_then_interrupt)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        prep.run_prepare([faces_dir / HAPPY], out, prep.PrepareOptions(frames=4, preview=False))
    assert [p.name for p in out.iterdir() if p.is_dir()] == []
    assert (out / "manifest.jsonl").exists()


def test_split_file_is_used(tmp_path, faces_dir, require_weight):
    require_weight("dlib_landmarks68")
    split_file = tmp_path / "split.txt"
    split_file.write_text("b01 test\n")
    out = tmp_path / "out"
    options = prep.PrepareOptions(frames=3, preview=False, split_file=str(split_file))
    prep.run_prepare([faces_dir / HAPPY], out, options)
    assert _manifest(out)[Path(HAPPY).stem]["split"] == "test"
    assert prep.read_split(out / "split.json") == {"b01": "test"}


def test_a_missing_pdm_warns_and_never_mixes_templates(tmp_path, faces_dir, require_weight, monkeypatch):
    """Without the OpenFace PDM prepare says so; clips aligned to another template are never added to a
    folder of PDM-aligned ones (a model trained on one misreads the other)."""
    from facenhance_cli import faces

    require_weight("dlib_landmarks68")
    require_weight("openface_pdm")
    out = tmp_path / "out"
    prep.run_prepare([faces_dir / HAPPY], out, prep.PrepareOptions(frames=3, preview=False))
    fallback = faces.AlignmentTemplate(faces.fallback_template_points(), "cmu-openface-fallback")
    monkeypatch.setattr(faces, "alignment_template", lambda weights_dir=None: fallback)
    said: list[str] = []
    with pytest.raises(UsageError, match="aligned to the openface-pdm template and this run would use"):
        prep.run_prepare(
            [faces_dir / SAD], out, prep.PrepareOptions(frames=3, preview=False), log=said.append
        )
    assert not (out / Path(SAD).stem).exists()
    assert any("OpenFace PDM (openface_pdm) is not in the weights lookup" in m for m in said)


@pytest.mark.slow
def test_workers_prepare_in_parallel(tmp_path, faces_dir, require_weight):
    require_weight("dlib_landmarks68")
    out = tmp_path / "out"
    options = prep.PrepareOptions(frames=3, preview=False, workers=2)
    report = prep.run_prepare([faces_dir / HAPPY, faces_dir / SAD], out, options)
    assert [r.status for r in report.results] == ["ok", "ok"]
    assert {r["subject"] for r in _manifest(out).values()} == {"b01", "b02"}


# ------------------------------------------------------------------------------------------------ CLI


def test_nothing_prepared_exits_nonzero_with_one_line(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage")
    noface = _faceless_video(tmp_path / "noface.mkv", 4)
    result = runner.invoke(
        app,
        [
            "prepare",
            str(bad),
            str(noface),
            "-o",
            str(tmp_path / "out"),
            "--frames",
            "4",
            "--detector",
            "dlib",
        ],
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "nothing could be prepared" in result.output
    missing = runner.invoke(app, ["prepare", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o2")])
    assert missing.exit_code == 1 and "not found" in missing.output and "Traceback" not in missing.output


def test_usage_errors_exit_2(tmp_path, faces_dir):
    result = runner.invoke(
        app, ["prepare", str(faces_dir / HAPPY), "-o", str(tmp_path / "o"), "--segment", "middle"]
    )
    assert result.exit_code == 2 and "--segment" in result.output
    result = runner.invoke(
        app, ["prepare", str(faces_dir / HAPPY), "-o", str(tmp_path / "o"), "--landmarks", "x"]
    )
    assert result.exit_code == 2


def test_identity_only_cli(tmp_path, faces_dir, require_weight):
    require_weight("dlib_landmarks68")
    from facenhance_cli.video import read_image

    out = tmp_path / "neutral.png"
    photo = faces_dir / "photos" / "gfpgan_inputs_cropped_faces_Adele_crop.png"
    result = runner.invoke(app, ["prepare", str(photo), "--identity-only", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert read_image(out).shape == (192, 192, 3)
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((120, 120, 3), 128, np.uint8))
    result = runner.invoke(app, ["prepare", str(blank), "--identity-only", "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "no face" in result.output and "Traceback" not in result.output


def test_help_covers_every_option():
    result = runner.invoke(app, ["prepare", "--help"])
    assert result.exit_code == 0
    import typer.main

    from facenhance_cli.cli import app as the_app

    command = typer.main.get_command(the_app).commands["prepare"]
    for param in command.params:
        assert param.help, f"{param.name} has no help"
