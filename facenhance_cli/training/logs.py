"""A run's log.jsonl (appended, trimmed on resume) and its loss curve (loss.png)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facenhance_cli.fileio import write_text

# One line of RUN/log.jsonl (and what the progress callback gets): step, loss, lr, speeds, flags.
LogRecord = dict[str, float | int | bool | str]


def append_log(run_dir: Path, record: LogRecord) -> None:
    """One JSON record appended to RUN/log.jsonl."""
    with open(run_dir / "log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def trim_log(run_dir: Path, step: int) -> None:
    """On resume, drop log records written after the checkpoint being resumed (at `step`)."""
    path = run_dir / "log.jsonl"
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= step
    ]
    write_text(path, "".join(line + "\n" for line in kept))


@dataclass
class Window:
    """The steps and start time of the current logging window (for steps/s)."""

    start: float = field(default_factory=time.perf_counter)
    steps: int = 0


def plot_loss_curve(log_path: Path, png_path: Path, width: int = 640, height: int = 360) -> None:
    """A log-scale training (blue) and validation (orange) loss curve, drawn with OpenCV."""
    import cv2

    from facenhance_cli.video import write_image

    if not log_path.is_file():
        return
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r and r["loss"] > 0]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r and r["val_loss"] > 0]
    if not train:
        return
    image = np.full((height, width, 3), 255, np.uint8)
    steps = [s for s, _ in train + val]
    values = [math.log10(v) for _, v in train + val]
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1
    s_lo, s_hi = min(steps), max(max(steps), min(steps) + 1)
    margin = 50

    def xy(step: float, value: float) -> tuple[int, int]:
        x = margin + (step - s_lo) / (s_hi - s_lo) * (width - 2 * margin)
        y = height - margin - (math.log10(value) - lo) / (hi - lo) * (height - 2 * margin)
        return int(x), int(y)

    cv2.rectangle(image, (margin, margin), (width - margin, height - margin), (0, 0, 0), 1)
    for series, color in ((train, (31, 119, 180)), (val, (255, 127, 14))):
        if len(series) > 1:
            points = np.array([xy(s, v) for s, v in series], np.int32)
            cv2.polylines(image, [points], False, color, 2)
    label = f"loss (log10 {lo:.2f}..{hi:.2f}) vs step {s_lo}..{s_hi}"
    cv2.putText(image, label, (margin, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    write_image(png_path, image)
