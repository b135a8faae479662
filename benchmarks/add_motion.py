"""Write `prepare`'s motion.csv into prepared clip folders made before `prepare` wrote it.

The head motion is computed as `prepare` computes it (`motion.estimate_motion` on the high frames and the
landmarks meta.json holds; from the decoded frames, so within a few hundredths of a degree of what `prepare`
writes from the frames before encoding), so `enhance --motion` and `training.target_motion = registered` can use old
folders without preparing them again. Folders that already have a motion.csv are left alone.

    python benchmarks/add_motion.py PREPARED_ROOT [--limit N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from facenhance_cli.motion import MOTION_FILE, estimate_motion, motion_csv_text
from facenhance_cli.video import read_video


def add_motion(folder: Path) -> tuple[int, int]:
    """Write folder/motion.csv; (frames, frames whose head moved)."""
    meta = json.loads((folder / "meta.json").read_text())
    high, _ = read_video(folder / "high.mkv")
    points = np.asarray(meta["landmarks_high"], np.float64) * (high.shape[1] / float(meta["size"]))
    n = min(len(high), len(points))
    motion = estimate_motion(high[0], high[:n], points[:n], points[0])
    partial = folder / (MOTION_FILE + ".partial")
    partial.write_text(motion_csv_text(motion))
    partial.replace(folder / MOTION_FILE)
    return n, sum(not np.allclose(row, [1, 0, 0, 0]) for row in motion.params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="at most this many folders")
    args = parser.parse_args()
    todo = [
        p
        for p in sorted(args.root.iterdir())
        if (p / "meta.json").is_file() and not (p / MOTION_FILE).exists()
    ]
    for folder in todo[: args.limit]:
        start = time.perf_counter()
        frames, moved = add_motion(folder)
        print(
            f"{folder.name}: {frames} frames, {moved} moved ({time.perf_counter() - start:.1f} s)", flush=True
        )


if __name__ == "__main__":
    main()
