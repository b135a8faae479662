"""`eval --align-truth`: the truth's head moved onto the identity image's pose, the background kept."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from facenhance_cli.cli import app
from facenhance_cli.evaluation.alignment import align_truth
from facenhance_cli.faces.alignment import _CMU_TEMPLATE
from facenhance_cli.metrics.fidelity import psnr_frames, ssim_frames
from facenhance_cli.motion import check_motion, estimate_motion

SIZE = 192


def scene(shift: tuple[float, float], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (S, S, 3) frame: a still, smooth background and a textured head (an ellipse around 68 landmarks)
    moved by `shift` px; and those (68, 2) landmarks."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32), (0, 0), 12)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32), (0, 0), 1.5)
    texture = (texture - texture.mean()) * 4 + 128
    points = 56 + _CMU_TEMPLATE * 80  # (68, 2) a face about 80 px wide in the middle
    head = np.zeros((SIZE, SIZE), np.float32)
    cv2.ellipse(head, (96, 88), (52, 66), 0, 0, 360, 1.0, -1)
    move = np.float64([[1, 0, shift[0]], [0, 1, shift[1]]])
    head_moved = cv2.warpAffine(head, move, (SIZE, SIZE))[..., None]
    texture_moved = cv2.warpAffine(
        texture, move, (SIZE, SIZE), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT
    )
    frame = background * (1 - head_moved) + texture_moved * head_moved
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8), points + np.asarray(shift)


def test_a_moved_head_comes_back_onto_the_identity_pose_and_the_background_stays():
    identity, identity_lmk = scene((0.0, 0.0))
    frames, landmarks = zip(*(scene(s) for s in [(0.0, 0.0), (4.0, -3.0), (-2.5, 1.5)]), strict=True)
    gt = np.stack(frames)
    jitter = np.random.default_rng(1).normal(0, 0.4, (3, 68, 2))  # landmark noise, as dlib's
    motion = estimate_motion(identity, gt, np.stack(landmarks) + jitter, identity_lmk)
    assert np.allclose(motion.params[1:, 2:] * SIZE, [[4.0, -3.0], [-2.5, 1.5]], atol=0.3)
    aligned = align_truth(gt, motion, identity_lmk)
    assert aligned.moved.tolist() == [False, True, True]
    assert (aligned.frames[0] == gt[0]).all() and aligned.valid[0].all()  # still: the raw frame itself
    raw = psnr_frames(gt[1:], np.stack([identity] * 2))
    moved_back = psnr_frames(aligned.frames[1:], np.stack([identity] * 2), aligned.valid[1:])
    assert (raw < 20).all() and (moved_back > raw + 8).all(), (raw, moved_back)
    corner = (slice(0, 12), slice(0, 12))  # background far from the head: never moved
    assert (aligned.frames[1][corner] == gt[1][corner]).all() and aligned.valid[1][corner].all()
    assert 0.8 < aligned.valid[1:].mean() < 1.0  # what the move leaves unknown is left out


def test_a_move_no_motion_file_may_hold_is_never_estimated():
    """A frame whose head looks 3x bigger (a failed track, a cut) is not a head motion: the estimate stays
    within what `check_motion` accepts, so `prepare` never writes a motion.csv that `enhance` refuses."""
    identity, lmk = scene((0.0, 0.0))
    zoom = cv2.getRotationMatrix2D((96.0, 96.0), 0.0, 3.0)  # (2, 3) identity px -> frame px
    frame = cv2.warpAffine(
        identity, zoom, (SIZE, SIZE), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT
    )
    points = lmk @ zoom[:, :2].T + zoom[:, 2]
    motion = estimate_motion(identity, np.stack([identity, frame]), np.stack([lmk, points]), lmk)
    check_motion(motion.params, "estimate")  # raises on a scale outside [0.5, 2]
    assert 0.5 <= motion.params[1, 0] <= 2.0


def test_a_still_clip_is_scored_exactly_as_the_raw_truth():
    identity, lmk = scene((0.0, 0.0))
    noise = np.random.default_rng(2).normal(0, 2, (4, SIZE, SIZE, 3))
    gt = np.clip(identity[None] + noise, 0, 255).astype(np.uint8)  # no motion, only sensor noise
    aligned = align_truth(gt, estimate_motion(identity, gt, np.stack([lmk] * 4), lmk), lmk)
    assert not aligned.moved.any() and (aligned.frames == gt).all() and aligned.valid.all()


def test_masked_psnr_and_ssim_count_only_the_valid_pixels():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 32, 32, 3), np.uint8)
    b = a.copy()
    b[:, :, :8] = 0  # wrong only in the left quarter
    valid = np.ones((2, 32, 32), bool)
    valid[:, :, :8] = False
    assert np.isinf(psnr_frames(a, b, valid)).all()
    assert np.allclose(psnr_frames(a, b, np.ones_like(valid)), psnr_frames(a, b))
    assert np.allclose(ssim_frames(a, b, np.ones_like(valid)), ssim_frames(a, b))
    assert (ssim_frames(a, b, valid) > ssim_frames(a, b)).all()


def test_eval_says_which_truth_it_scored_against(tmp_path):
    from helpers import make_prepared_dataset

    data = make_prepared_dataset(tmp_path / "data", n_train=0, n_test=2, n_frames=4, size=64)
    run = CliRunner().invoke
    common = [
        "eval",
        str(data),
        "--gt",
        str(data),
        "--metrics",
        "psnr,ssim",
        "--baseline",
        "identity",
        "--no-cache",
    ]
    raw = run(app, [*common, "--json", str(tmp_path / "raw.json")])
    aligned = run(app, [*common, "--align-truth", "--json", str(tmp_path / "aligned.json")])
    assert raw.exit_code == 0 and aligned.exit_code == 0, raw.output + aligned.output
    raw_report = json.loads((tmp_path / "raw.json").read_text())
    aligned_report = json.loads((tmp_path / "aligned.json").read_text())
    assert raw_report["settings"]["truth"] == "raw"
    assert aligned_report["settings"]["truth"] == "head-aligned"
    assert aligned_report["settings"]["truth_aligned"]["videos"] + len(aligned_report["notes"]) >= 1


@pytest.mark.parametrize("name", ["sheet.txt", "sheet"])
def test_a_sheet_that_is_not_an_image_name_is_refused_before_any_work(tmp_path, name):
    from helpers import make_prepared_dataset

    data = make_prepared_dataset(tmp_path / "data", n_train=0, n_test=1, n_frames=2, size=32)
    result = CliRunner().invoke(app, ["eval", str(data), "--gt", str(data), "--sheet", str(tmp_path / name)])
    assert result.exit_code == 2 and "--sheet" in result.output and "Traceback" not in result.output
    assert not (tmp_path / name).exists()
