"""Copy prepared clip folders with their low frames aligned steadily (docs/experiments.md rows 42-43).

`prepare` aligns each low frame on that frame's own rigid landmarks, so the low face jitters against the
head by the landmarks' noise, while `eval --align-truth` moves the truth back by the registered head motion
(motion.csv). Here each low frame is re-aligned as frame 0's landmark alignment composed with the registered
motion, C_n = A_0 B^-1 M_n^-1 B A_n^-1 (A_n: prepare's source -> low transform of frame n, B: the source ->
high crop, M_n: motion.csv's move), by warping the 64 px low frame with C_n (bicubic; an approximation of
aligning the source frame so). high.mkv and identity.png are linked, not copied. Rows 42-43 ran on motion
files written before `estimate_motion` dropped out-of-range moves (8 training clips had such a frame, kept
unmoved then); they are rewritten since, and every file is read by `read_motion`, as `enhance` reads it.

    python benchmarks/steady_low_frames.py PREPARED_DIR OUT_DIR
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from facenhance_cli import faces
from facenhance_cli.motion import read_motion
from facenhance_cli.video import read_video, write_video


def as3x3(matrix: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])


def steady_low(clip: Path) -> tuple[np.ndarray, float, np.ndarray]:
    """(F, L, L, 3) re-aligned low frames, their fps, and each correction's shift at the low frame's centre."""
    meta = json.loads((clip / "meta.json").read_text())
    low, fps = read_video(clip / "low.mkv")
    size = meta["size"]
    to_high = as3x3(faces.crop_matrix(faces.CropBox(*meta["crop_box"]), size))  # B
    to_low = [as3x3(a) for a in meta["low_transforms"]]  # A_n
    motion = read_motion(clip / "motion.csv", len(low))
    centre = np.array([low.shape[1] / 2, low.shape[1] / 2, 1.0])
    frames, shifts = [], []
    for n, frame in enumerate(low):
        move = as3x3(motion.matrix(n, size))  # M_n
        steady = to_low[0] @ np.linalg.inv(to_high) @ np.linalg.inv(move) @ to_high
        correction = (steady @ np.linalg.inv(to_low[n]))[:2]  # (2, 3) low px -> low px
        shifts.append(np.abs(correction @ centre - centre[:2]).max())
        frames.append(cv2.warpAffine(frame, correction, low.shape[1:3][::-1], flags=cv2.INTER_CUBIC))
    return np.stack(frames), fps, np.array(shifts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    shifts = []
    for clip in sorted(p for p in args.root.iterdir() if (p / "motion.csv").is_file()):
        out = args.out / clip.name
        out.mkdir(parents=True, exist_ok=True)
        for name in ("high.mkv", "identity.png"):
            (out / name).unlink(missing_ok=True)
            (out / name).symlink_to((clip / name).resolve())
        for name in ("meta.json", "motion.csv"):
            shutil.copy2(clip / name, out / name)
        frames, fps, shift = steady_low(clip)
        write_video(out / "low.mkv", frames, fps, lossless=True)
        shifts.append(shift)
    for name in ("manifest.jsonl", "split.json"):
        if (args.root / name).is_file():
            shutil.copy2(args.root / name, args.out / name)
    every = np.concatenate(shifts)
    print(
        f"{len(shifts)} clips; correction at the low centre: median {np.median(every):.2f} px, 90th percentile {np.percentile(every, 90):.2f}"
    )


if __name__ == "__main__":
    main()
