"""Contact sheet of the clips whose heads move most: low | outputs | ground truth at their most-moved frames.

Usage: python benchmarks/motion_sheet.py --clips PREPARED --clip c047_styleganex_390 --clip c011_... \
           --method "v8, head still=OUT_STILL" --method "v8 + motion=OUT_MOVED" [--frames 3] [--tile 128] -o sheet.png
PREPARED holds `prepare` clip folders with motion.csv; each --method is LABEL=FOLDER of `enhance` outputs
named `<clip>.mkv`. The frames shown are those whose motion (motion.csv) moves a frame corner furthest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facenhance_cli.evaluation.report import contact_sheet
from facenhance_cli.motion import read_motion
from facenhance_cli.video import read_video, write_image


def most_moved(clip: Path, size: int, n: int) -> list[int]:
    """The n frames (in order) whose head motion moves a size x size frame's corners furthest."""
    motion = read_motion(clip / "motion.csv")
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    reach = [np.abs(corners @ motion.matrix(i, size).T - corners[:, :2]).max() for i in range(len(motion))]
    return sorted(int(i) for i in np.argsort(reach)[::-1][:n])


def clip_rows(clip: Path, methods: list[tuple[str, Path]], n: int) -> dict[str, np.ndarray]:
    """Rows of the sheet for one clip: low, each method, ground truth, at its most-moved frames."""
    truth = read_video(clip / "high.mkv")[0]
    frames = most_moved(clip, truth.shape[1], n)
    rows = {"low": read_video(clip / "low.mkv")[0][frames]}
    for label, folder in methods:
        rows[label] = read_video(folder / f"{clip.name}.mkv")[0][frames]
    rows["ground truth"] = truth[frames]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, required=True)
    parser.add_argument("--clip", action="append", required=True)
    parser.add_argument("--method", action="append", required=True, help="LABEL=FOLDER")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument(
        "--tile", type=int, default=None, help="px per frame on the sheet (default: full size)"
    )
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    methods = [(m.split("=", 1)[0], Path(m.split("=", 1)[1])) for m in args.method]
    sheet = [(name, clip_rows(args.clips / name, methods, args.frames)) for name in args.clip]
    write_image(args.out, contact_sheet(sheet, args.tile))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
