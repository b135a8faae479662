"""What `facenhance eval` computes: metric and baseline names, report keys, options and the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facenhance_cli.errors import UsageError

METRICS = ("psnr", "ssim", "acd", "acd_i", "fvd", "lmk", "id_match", "sharpness")
NEEDS_GT_LANDMARKS = {"lmk", "sharpness"}  # scored with the ground truth's 68 dlib landmarks
BASELINES = ("identity", "bicubic", "paste", "detail", "paste+motion")
METHOD = "method"  # the generated videos; baselines are reported beside it under their own names
# Report keys, in a stable order: a video-level value for each (FVD only exists over the set).
VIDEO_KEYS = (
    "psnr",
    # PSNR over the frames whose ground truth is not the identity image itself (prepare's frame 0 is): the
    # same frames for every method and baseline, none of them the input. Near-copies of that input frame
    # score 40-64 dB and moved `psnr` by up to 0.7 dB on 32-frame clips (docs/experiments.md).
    "psnr_unseen",
    "ssim",
    "acd",
    "acd_i",
    "lmk_nme",
    "lmk_nme_mouth",
    "lmk_nme_eyes",
    "expr_nme",
    "id_match",
    "sharpness",
)
SUMMARY_KEYS = (*VIDEO_KEYS[:5], "fvd", *VIDEO_KEYS[5:])  # and FVD, over the whole set
PSNR_INF_NOTE = (
    'infinite values (PSNR of identical frames) are written as the string "inf"; missing ones as null'
)
# One video's scores for one method: name (str), frames, no_face_frames, identical_frames (int) and
# each of VIDEO_KEYS (float, None where not computed).
ScoreRow = dict[str, float | int | str | None]
# The JSON report (summary, per_video, baselines, settings, notes, warnings): nested dicts and lists of
# plain values, which the CLI reads key by key. No narrower type lets that code index nested levels.
Report = dict[str, Any]
FEW_VIDEOS_NOTE = "FVD over {n} videos is strongly biased (its 400-d covariance has rank < {n}); use >= {m}"


@dataclass
class EvalOptions:
    """What to compute and how."""

    metrics: tuple[str, ...] = METRICS
    baselines: tuple[str, ...] = BASELINES
    fvd_frames: int = 16  # the FVD convention (Unterthiner et al. 2018): 16-frame clips
    i3d_batch: int = 4  # clips per I3D forward pass
    device: str = "cpu"
    cache_dir: Path | None = None  # None: no feature cache
    weights_dir: Path | None = None
    sheet_videos: int = 4
    sheet_frames: int = 4
    # Score against the truth with each frame's head moved onto the identity image's pose
    # (`evaluation.alignment`); the pixels that leaves unknown are left out of PSNR and SSIM.
    align_truth: bool = False


@dataclass
class EvalResult:
    """The JSON-ready report and the frames kept for the contact sheet."""

    report: Report
    sheet: list[tuple[str, dict[str, np.ndarray]]] = field(default_factory=list)

    @property
    def notes(self) -> list[str]:
        """What is worth knowing about the report (a baseline that cannot be made for a clip), one line each."""
        return self.report["notes"]

    @property
    def warnings(self) -> list[str]:
        """What makes the report less than was asked for (a metric skipped, videos left out), one line each."""
        return self.report["warnings"]


def parse_names(text: str | None, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """'a,b' -> ('a', 'b') checked against `allowed`; 'all' -> allowed; 'none' or '' -> ()."""
    if text is None or text.strip().lower() == "all":
        return allowed
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names in ([], ["none"]):
        return ()
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise UsageError(f"unknown {what} {', '.join(unknown)}: choose from {', '.join(allowed)}")
    return tuple(n for n in allowed if n in names)
