"""What a perfect method confined to the edit region could score: oracle videos for `eval` (experiments row 45).

Per clip, the head-aligned truth (`eval --align-truth`'s, from motion.csv) kept inside the edit mask a model
may change (`pasting.edit_mask`, MARGIN px around the pasted face, per frame) and the identity image
outside it; with --low-res the truth is first brought down to the low face's resolution and back up
(area, then bicubic), the most a method given the low frame alone could know; with --union the region
also covers frame 0's face (the identity's own, which a turned or moved face leaves behind); with
--paste-inside the paste is kept inside its own face alpha and the truth only in the ring around it (what
drawing the jaw line, cheeks and ears right is worth over the paste, row 47). Unlike
benchmarks/edit_ceiling.py (row 27: the truth blended into a model's output, PSNR) these are written as
method folders, so every metric of `eval` (FVD, expr) scores them:

    python benchmarks/edit_region_oracles.py PREPARED_TEST_DIR OUT_DIR --margin 16 [--low-res] [--union]
        [--paste-inside]
    facenhance eval OUT_DIR --gt PREPARED_TEST_DIR --align-truth
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from facenhance_cli.evaluation.alignment import align_truth
from facenhance_cli.motion import read_motion
from facenhance_cli.pasting import FEATHER_SIGMA, WarpedLowFace, edit_mask, locate_low_face, warp_low_face
from facenhance_cli.prepare.clip import stored_high_landmarks
from facenhance_cli.video import read_image, read_video, write_video


def at_low_resolution(frames: np.ndarray, meta: dict) -> np.ndarray:
    """(F, S, S, 3) frames brought down to the low face's resolution (prepare's frame-0 scale) and back up."""
    size = frames.shape[1]
    low_scale = np.sqrt(
        abs(np.linalg.det(np.asarray(meta["low_transforms"][0])[:, :2]))
    )  # low px / source px
    side = round(size * low_scale * meta["crop_box"][2] / meta["size"])  # the crop at the low face's scale
    return np.stack(
        [cv2.resize(cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA), (size, size), interpolation=cv2.INTER_CUBIC)
         for f in frames]
    )  # fmt: skip


def oracle_video(clip: Path, args: argparse.Namespace) -> tuple[np.ndarray, float]:
    """(F, S, S, 3) uint8: the aligned truth inside each frame's edit mask, the identity image outside."""
    high, fps = read_video(clip / "high.mkv")
    low, _ = read_video(clip / "low.mkv")
    identity = read_image(clip / "identity.png").astype(np.float32)
    size = high.shape[1]
    landmarks = stored_high_landmarks(clip / "meta.json", size)
    assert landmarks is not None, f"{clip}: no landmarks in meta.json"
    truth = align_truth(high, read_motion(clip / "motion.csv", len(high)), landmarks[0]).frames
    if args.low_res:
        truth = at_low_resolution(truth, json.loads((clip / "meta.json").read_text()))
    matrix, _ = locate_low_face(identity.astype(np.uint8), low[0])  # as the paste places the low face
    first = warp_low_face(low[0], matrix, size)
    frames = []
    for target, low_frame in zip(truth, low, strict=True):
        warped = warp_low_face(low_frame, matrix, size)
        if args.union:  # where the face is now, and where the identity image has it
            warped = WarpedLowFace(warped.face, np.maximum(warped.coverage, first.coverage))
        weight = edit_mask(low_frame, matrix, size, warped=warped, margin=args.margin)[..., None]  # (S, S, 1)
        frame = weight * target + (1 - weight) * identity
        if args.paste_inside:  # the paste's own blend: the low face inside its alpha
            alpha = cv2.GaussianBlur(warped.coverage, (0, 0), FEATHER_SIGMA)[..., None]  # (S, S, 1)
            frame = alpha * warped.face.astype(np.float32) + (1 - alpha) * frame
        frames.append(np.clip(frame + 0.5, 0, 255).astype(np.uint8))
    return np.stack(frames), fps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prepared", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--margin", type=int, default=16, help="px around the pasted face (the models': 16)")
    parser.add_argument("--low-res", action="store_true", help="the truth at the low face's resolution")
    parser.add_argument("--union", action="store_true", help="the region also covers frame 0's face")
    parser.add_argument("--paste-inside", action="store_true", help="the paste inside its face alpha")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    clips = sorted(p for p in args.prepared.iterdir() if (p / "motion.csv").is_file())
    for clip in clips:
        frames, fps = oracle_video(clip, args)
        write_video(args.out / f"{clip.name}.mkv", frames, fps, lossless=True)
    print(f"{len(clips)} oracle videos in {args.out}")


if __name__ == "__main__":
    main()
