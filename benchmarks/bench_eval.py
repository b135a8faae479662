"""How long `facenhance eval` takes at the paper's test-set size (78 videos x 32 frames of 192x192).

Builds N prepare-style clips from the shared real face clips (ground truth = the clip resized to 192,
generated = ground truth plus noise, identity = first frame, low = 64x64), then times `evaluate` per
metric group and all together, with a cold and a warm feature cache, and extrapolates linearly to 78
videos (every stage is per video; only the final Frechet distance is over the set and takes
milliseconds). Run: `python benchmarks/bench_eval.py --videos 8` (prints a table; not part of the tests).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACENHANCE_SHARED", REPO.parent / "shared"))
PAPER_VIDEOS, PAPER_FRAMES = 78, 32


def build_dataset(root: Path, n_videos: int, n_frames: int) -> None:
    """root/prep/<clip>/{high.mkv, low.mkv, identity.png} and root/gen/<clip>.mkv from real clips."""
    import cv2

    from facenhance_cli.video import read_video, write_image, write_video

    clips = sorted((SHARED / "data" / "faces" / "clips").glob("*.mp4"))
    rng = np.random.default_rng(0)
    made = 0
    for clip in clips:
        if made == n_videos:
            break
        frames, _ = read_video(clip, max_frames=n_frames)
        if len(frames) < n_frames:
            continue
        side = min(frames.shape[1:3])
        y0, x0 = (frames.shape[1] - side) // 2, (frames.shape[2] - side) // 2
        high = np.stack(
            [
                cv2.resize(f[y0 : y0 + side, x0 : x0 + side], (192, 192), interpolation=cv2.INTER_AREA)
                for f in frames
            ]
        )
        folder = root / "prep" / f"clip{made:03d}"
        folder.mkdir(parents=True)
        write_video(folder / "high.mkv", high, 25, lossless=True)
        write_video(
            folder / "low.mkv",
            np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in high]),
            25,
            lossless=True,
        )
        write_image(folder / "identity.png", high[0])
        gen = np.clip(high.astype(np.int16) + rng.integers(-8, 9, high.shape), 0, 255).astype(np.uint8)
        write_video(root / "gen" / f"clip{made:03d}.mkv", gen, 25, lossless=True)
        made += 1
    if made < n_videos:
        sys.exit(f"only {made} clips with {n_frames} frames in {SHARED}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8, help="videos to measure (extrapolated to 78)")
    parser.add_argument("--frames", type=int, default=PAPER_FRAMES)
    args = parser.parse_args()
    os.environ.setdefault("FACENHANCE_WEIGHTS", str(SHARED / "weights"))

    import torch

    from facenhance_cli import evaluation as ev

    groups = {
        "psnr+ssim": ("psnr", "ssim"),
        "acd+acd_i+id_match (dlib embedding)": ("acd", "acd_i", "id_match"),
        "lmk (dlib 68 landmarks)": ("lmk",),
        "fvd (I3D, 16 frames)": ("fvd",),
        "all metrics, cold cache": ev.METRICS,
        "all metrics, warm cache": ev.METRICS,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        build_dataset(root, args.videos, args.frames)
        print(f"built {args.videos} clips x {args.frames} frames in {time.perf_counter() - t0:.1f} s")
        pairs, _ = ev.find_pairs([root / "gen"], [root / "prep"])
        print(
            f"torch threads: {torch.get_num_threads()}, cpu count: {os.cpu_count()}; "
            "baselines identity + bicubic"
        )
        print(f"{'stage':40s} {'s measured':>11s} {'s/video':>8s} {'s for 78 x 32 (extrapolated)':>30s}")
        for label, metrics in groups.items():
            cache = root / ("cache-all" if label.startswith("all") else f"cache-{len(label)}")
            options = ev.EvalOptions(metrics=metrics, cache_dir=cache)
            t0 = time.perf_counter()
            ev.evaluate(pairs, options)
            seconds = time.perf_counter() - t0
            per_video = seconds / args.videos * (PAPER_FRAMES / args.frames)
            print(f"{label:40s} {seconds:11.1f} {per_video:8.2f} {per_video * PAPER_VIDEOS:30.0f}")


if __name__ == "__main__":
    main()
