"""Head motion: the CSV, the head moved over the identity's background, and `enhance` following it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import make_prepared_dataset, save_tiny_model
from typer.testing import CliRunner

from facenhance_cli.cli import app
from facenhance_cli.faces.alignment import _CMU_TEMPLATE
from facenhance_cli.motion import (
    HeadLayer,
    HeadMotion,
    head_layer,
    motion_csv_text,
    params_from_matrix,
    read_motion,
)
from facenhance_cli.video import read_image, read_video

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NO_MODEL = "/nonexistent/model.pt"  # a check that ran after the model loads would say "not found" instead


def face_landmarks(size: int) -> np.ndarray:
    """(68, 2) landmarks of a face filling the middle of a size x size image (dlib's mean shape)."""
    return size * (0.3 + 0.4 * _CMU_TEMPLATE)


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_motion_round_trips_through_its_csv_and_its_matrices(tmp_path):
    params = np.array([[1, 0, 0, 0], [1.05, 3.0, 0.02, -0.01], [0.97, -2.0, -0.03, 0.04]], np.float64)
    motion = HeadMotion(params)
    for n in range(3):
        assert np.allclose(params_from_matrix(motion.matrix(n, 192), 192), params[n])
    path = tmp_path / "motion.csv"
    path.write_text(motion_csv_text(motion))
    assert np.allclose(read_motion(path, 3).params, params, atol=1e-5)
    assert motion.moves(192) and not HeadMotion(params[:1]).moves(192)


def test_the_head_moves_and_pixels_it_never_reaches_stay_the_identity_images():
    identity = read_image(EXAMPLES / "neutral.png")  # (192, 192, 3)
    layer = head_layer(identity, face_landmarks(192))
    move = np.float64([[1, 0, 7], [0, 1, -4]])
    out = layer.move(identity, move)
    reached = layer.follow_weight(move) > 0
    assert not reached.all() and (out[~reached] == identity[~reached]).all()
    inner = cv2.warpAffine(layer.mask, move, (192, 192)) > 0.999  # the moved head itself
    shifted = cv2.warpAffine(identity, move, (192, 192), flags=cv2.INTER_LANCZOS4)
    assert np.abs(out[inner].astype(int) - shifted[inner].astype(int)).max() <= 1
    assert (layer.move(identity, np.eye(2, 3)) == identity).all()  # no motion, no change


@pytest.mark.parametrize("degrees,shift", [(3.0, (7, -4)), (-22.0, (-40, 15)), (0.0, (0.3, 0.0))])
def test_the_heads_move_is_one_warp_that_never_folds(degrees, shift):
    """No seam and no ghost: every output pixel samples the frame through one continuous map whose
    Jacobian stays positive, so no frame pixel shows twice (a fold) and the old head is not left behind."""
    layer = head_layer(read_image(EXAMPLES / "neutral.png"), face_landmarks(192))
    move = cv2.getRotationMatrix2D((96.0, 96.0), degrees, 1.0)
    move[:, 2] += shift
    map_x, map_y, weight = layer.source_map(move)
    dx_dx, dx_dy = np.gradient(map_x, axis=1), np.gradient(map_x, axis=0)
    dy_dx, dy_dy = np.gradient(map_y, axis=1), np.gradient(map_y, axis=0)
    assert (dx_dx * dy_dy - dx_dy * dy_dx).min() > 0.1
    assert weight.max() == 1.0 and 0.0 <= weight.min()


@pytest.mark.parametrize(
    "body,words",
    [
        ("frame,scale,rotation_deg,tx,ty\n0,1,0,0,0\n", "1 motion rows for a video of 32"),
        ("frame,scale,rotation_deg,tx,ty\n" + "0,one,0,0,0\n" * 32, "not a number"),
        ("frame,scale,rotation_deg,tx,ty\n" + "0,nan,0,0,0\n" * 32, "finite"),
        ("frame,scale,rotation_deg,tx,ty\n" + "0,5,0,0,0\n" * 32, "scale must be in"),
        ("frame,scale,rotation_deg\n" + "0,1,0\n" * 32, "missing column"),
    ],
)
def test_a_bad_motion_file_is_refused_before_the_model_loads(tmp_path, body, words):
    motion = tmp_path / "motion.csv"
    motion.write_text(body)
    out = tmp_path / "out.mp4"
    args = [EXAMPLES / "low.mp4", "-i", EXAMPLES / "neutral.png", "-o", out, "--model", NO_MODEL]
    result = run("enhance", *args, "--motion", motion)
    assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output, (
        result.output
    )
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


@pytest.fixture()
def moving_clip(tmp_path):
    """A prepared clip folder (32 px, 4 frames) whose head moves right from frame 1 on, and a tiny model."""
    data = make_prepared_dataset(tmp_path / "data", n_train=0, n_test=1, n_frames=4, size=32)
    clip = next(p for p in data.iterdir() if p.is_dir())
    meta = json.loads((clip / "meta.json").read_text())
    meta.update(size=32, landmarks_high=[face_landmarks(32).tolist()] * 4)
    (clip / "meta.json").write_text(json.dumps(meta))
    rows = "".join(f"{n},1,0,{0.1 if n else 0},0\n" for n in range(4))
    (clip / "motion.csv").write_text("frame,scale,rotation_deg,tx,ty\n" + rows)
    return clip, save_tiny_model(tmp_path)


def test_enhance_follows_a_prepared_clips_motion_and_says_so(moving_clip, tmp_path, monkeypatch):
    clip, model = moving_clip
    applied: list[np.ndarray] = []  # the tiny model draws a flat frame: watch the moves, not the pixels
    written: list[np.ndarray] = []  # what each move returned, which the output must hold
    original = HeadLayer.move

    def watched(layer: HeadLayer, frame: np.ndarray, move: np.ndarray) -> np.ndarray:
        applied.append(move)
        written.append(original(layer, frame, move))
        return written[-1]

    monkeypatch.setattr(HeadLayer, "move", watched)
    moved = run("enhance", clip, "-o", tmp_path / "moved.mkv", "--model", model, "--lossless")
    assert moved.exit_code == 0 and "head moved" in moved.output, moved.output
    assert [round(m[0, 2], 3) for m in applied] == [0.0, 3.2, 3.2, 3.2]  # tx 0.1 of 32 px after frame 0
    applied.clear()
    still = run("enhance", clip, "-o", tmp_path / "still.mkv", "--model", model, "--lossless", "--no-motion")
    assert still.exit_code == 0 and "head moved" not in still.output and not applied
    a, b = read_video(tmp_path / "moved.mkv")[0], read_video(tmp_path / "still.mkv")[0]
    assert (a[0] == b[0]).all()  # frame 0 is at the identity's pose
    assert len(written) == len(a)  # every frame went through the move, and the output holds what it gave
    assert all((frame == moved).all() for frame, moved in zip(a, written, strict=True))


def test_a_prepared_clip_without_motion_warns_and_fails_under_strict(moving_clip, tmp_path):
    clip, model = moving_clip
    (clip / "motion.csv").unlink()
    result = run("enhance", clip, "-o", tmp_path / "out.mkv", "--model", model, "--lossless")
    assert result.exit_code == 0 and "no motion.csv" in result.output, result.output
    strict = run("enhance", clip, "-o", tmp_path / "strict.mkv", "--model", model, "--lossless", "--strict")
    assert (
        strict.exit_code == 1 and "no motion.csv" in strict.output and not (tmp_path / "strict.mkv").exists()
    )


def test_eval_scores_the_paste_moved_by_the_clips_motion_and_aligns_the_truth_with_it(tmp_path):
    """A prepared clip whose head moves right: the paste+motion baseline follows it (closer to the raw
    truth than the paste), and --align-truth moves the truth back (the paste closer to it than to the raw)."""
    from test_align_truth import scene

    from facenhance_cli.video import write_image, write_video

    shifts = [(0.0, 0.0), (3.0, 0.0), (6.0, 1.0), (9.0, 2.0)]
    frames, points = zip(*(scene(s) for s in shifts), strict=True)
    gt = np.stack(frames)
    mask = np.zeros((64, 64), np.uint8)
    cv2.ellipse(mask, (32, 30), (16, 21), 0, 0, 360, 1, -1)
    aligned_face = cv2.resize(gt[0], (64, 64), interpolation=cv2.INTER_AREA) * mask[..., None]
    low = np.stack([aligned_face] * len(gt))  # prepare's low frames are aligned: no head motion in them
    clip = tmp_path / "data" / "s00_clip"
    clip.mkdir(parents=True)
    write_video(clip / "high.mkv", gt, 25, lossless=True)
    write_video(clip / "low.mkv", low, 25, lossless=True)
    write_image(clip / "identity.png", gt[0])
    (clip / "meta.json").write_text(
        json.dumps({"clip_id": "s00_clip", "size": 192, "landmarks_high": [p.tolist() for p in points]})
    )
    rows = "".join(f"{n},1,0,{dx / 192},{dy / 192}\n" for n, (dx, dy) in enumerate(shifts))
    (clip / "motion.csv").write_text("frame,scale,rotation_deg,tx,ty\n" + rows)
    (tmp_path / "data" / "manifest.jsonl").write_text(
        json.dumps({"clip_id": "s00_clip", "split": "test", "status": "ok"}) + "\n"
    )
    reports = {}
    for name, extra in (("raw", []), ("aligned", ["--align-truth"])):
        out = tmp_path / f"{name}.json"
        args = ["eval", clip / "high.mkv", "--gt", clip / "high.mkv", "--identity", clip / "identity.png"]
        args += [
            "--low",
            clip / "low.mkv",
            "--metrics",
            "psnr",
            "--baseline",
            "paste,paste+motion",
            "--no-cache",
        ]
        result = run(*args, *extra, "--json", out)
        assert result.exit_code == 0, result.output
        reports[name] = json.loads(out.read_text())
    raw, aligned = reports["raw"]["baselines"], reports["aligned"]["baselines"]
    assert raw["paste+motion"]["psnr_unseen"] > raw["paste"]["psnr_unseen"] + 3
    assert aligned["paste"]["psnr_unseen"] > raw["paste"]["psnr_unseen"] + 3
    assert reports["aligned"]["settings"]["truth_aligned"]["moved_frames"] == 3
