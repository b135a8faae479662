"""End-to-end speed of `facenhance prepare` with the dlib backend on 480x480 video, pinned to one core.

Usage: python benchmarks/bench_prepare.py [VIDEO] [--frames N] [--repeat R]
Default input: ../shared/data/faces/clips/b12_liveportrait_d20.mp4 (480x480, 175 frames, 25 fps); any
480x480 face video works. Every frame of the clip is prepared (--segment all, N = its frame count), so
frames/s counts decoded, detected, aligned and written frames. Target (issue 3): >= 10 frames/s per core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACENHANCE_SHARED", REPO.parent / "shared"))


def _pin_one_core() -> str:
    """Run on one CPU core (threads of cv2, torch and the video decoder all share it)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        core = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    except (AttributeError, OSError):
        return "not pinned (no sched_setaffinity)"


def main() -> None:
    """Print a table of frames per second per core for the stages and the whole pipeline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", default=str(SHARED / "data/faces/clips/b12_liveportrait_d20.mp4"))
    parser.add_argument(
        "--frames", type=int, default=0, help="frames to prepare (0: every frame of the clip)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pinned = _pin_one_core()
    if not os.environ.get("FACENHANCE_WEIGHTS") and (SHARED / "weights").is_dir():
        os.environ["FACENHANCE_WEIGHTS"] = str(SHARED / "weights")

    import cv2
    import numpy as np

    cv2.setNumThreads(1)
    from facenhance_cli import faces
    from facenhance_cli.prepare import PrepareOptions, discover_inputs, process_clip
    from facenhance_cli.video import count_frames, probe_video, read_video

    info = probe_video(args.video)
    n = args.frames or info.n_frames or count_frames(args.video)
    detector = faces.LandmarkDetector("dlib", "dlib")
    template = faces.alignment_template()

    # Stage timings on the decoded frames.
    t = time.perf_counter()
    frames, _ = read_video(args.video, max_frames=n)
    t_decode = time.perf_counter() - t
    t = time.perf_counter()
    boxes = [detector.detect_faces(f) for f in frames]
    t_detect = time.perf_counter() - t
    t = time.perf_counter()
    lms = np.stack([detector.landmarks_in_box(f, b[0]) for f, b in zip(frames, boxes, strict=True) if b])
    t_landmarks = time.perf_counter() - t
    t = time.perf_counter()
    for f, lm in zip(frames, lms, strict=False):
        faces.align_face(f, lm, template, 64)
    t_align = time.perf_counter() - t

    source = discover_inputs([args.video])[0][0]
    rows = []
    for preview in (False, True):
        times = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as out:
                options = PrepareOptions(
                    frames=n, segment="all", preview=preview, landmarks="dlib", detector="dlib"
                )
                t = time.perf_counter()
                result = process_clip(source, Path(out), options, detector)
                times.append(time.perf_counter() - t)
                assert result.status == "ok", result.reason
        rows.append((f"end to end, preview={'on' if preview else 'off'}", n / statistics.median(times)))

    print(f"input {args.video}: {info.width}x{info.height}, {n} frames; {pinned}")
    print(f"{'stage':40s} {'frames/s per core':>18s}")
    stages = [
        ("decode", t_decode),
        ("detect (dlib HOG)", t_detect),
        ("landmarks (dlib 68)", t_landmarks),
        ("low alignment + mask", t_align),
    ]
    for name, seconds in stages:
        print(f"{name:40s} {len(frames) / seconds:18.1f}")
    for name, fps in rows:
        print(f"{name:40s} {fps:18.1f}")


if __name__ == "__main__":
    main()
