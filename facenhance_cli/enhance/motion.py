"""Where an `enhance` job's head motion comes from, checked before any model loads.

In order: `--no-motion` (none); `--motion FILE` (a CSV, one row per frame); a `prepare` clip folder's
motion.csv (a folder prepared before motion was measured: a warning, and the head stays); `--prepare-input`
(measured on the real video while its faces are aligned). Anything else has no motion: the head stays where
the identity image has it, as before.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facenhance_cli.enhance.planning import EnhanceJob
from facenhance_cli.motion import MOTION_FILE, HeadLayer, HeadMotion, read_motion


@dataclass(frozen=True)
class JobMotion:
    """A job's head motion, once known, and how the identity image's head is cut out to follow it."""

    motion: HeadMotion
    layer: HeadLayer

    def move(self, frame: np.ndarray, n: int) -> np.ndarray:
        """(S, S, 3) uint8 frame n, drawn at the identity's pose, with its head where the motion has it."""
        if n >= len(self.motion):
            return frame
        return self.layer.move(frame, self.motion.matrix(n, frame.shape[0]))


def motion_file_for(low: Path, motion_file: Path | None, no_motion: bool) -> Path | None:
    """The CSV a job's motion is read from: --motion, else a `prepare` clip's own; None without one."""
    if no_motion:
        return None
    if motion_file is not None:
        return motion_file
    own = low.parent / MOTION_FILE
    return own if low.name == "low.mkv" and own.is_file() else None


def prepared_without_motion(low: Path) -> bool:
    """True for a `prepare` clip folder made before motion was measured (meta.json, no motion.csv)."""
    folder = low.parent
    return low.name == "low.mkv" and (folder / "meta.json").is_file() and not (folder / MOTION_FILE).is_file()


def check_motion_file(path: Path, n_frames: int) -> HeadMotion:
    """The job's motion file read and checked against its frame count (when the container says it)."""
    return read_motion(path, n_frames if n_frames > 0 else None)


def check_motion_files(jobs: list[EnhanceJob], no_motion: bool) -> None:
    """Every job's motion file read and checked before any model loads: one line and exit 2 when wrong."""
    from facenhance_cli.video import probe_video

    for job in jobs:
        path = motion_file_for(job.low, job.motion, no_motion)
        if path is not None:
            check_motion_file(path, probe_video(job.low).n_frames)


def identity_landmarks(low: Path, identity: np.ndarray, weights_dir: Path | None) -> np.ndarray | None:
    """(68, 2) landmarks of the (S, S, 3) identity image: prepare's (its frame 0) when the job is a clip
    folder whose identity.png is that frame, else detected (None when no face is found)."""
    from facenhance_cli.prepare.clip import stored_high_landmarks

    stored = (
        stored_high_landmarks(low.parent / "meta.json", identity.shape[0]) if low.name == "low.mkv" else None
    )
    if stored is not None and len(stored):
        return stored[0]
    from facenhance_cli import faces
    from facenhance_cli.errors import NoFaceError

    detector = faces.default_detector(weights_dir=weights_dir)
    try:
        track = faces.track_landmarks([identity], detector)
    except NoFaceError:
        return None
    return track.landmarks[0] if bool(track.found[0]) else None


@functools.lru_cache(maxsize=1)
def tracked_video(path: Path, weights_dir: Path | None) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """A real video's (H, W, 3) uint8 frames and their (F, 68, 2) tracked landmarks, decoded and tracked
    once per job: its aligned low frames and its head motion both come from them."""
    from facenhance_cli import faces
    from facenhance_cli.video import iter_frames

    frames = list(iter_frames(path))
    landmarks = faces.track_landmarks(frames, faces.default_detector(weights_dir=weights_dir)).landmarks
    return tuple(frames), landmarks


@functools.lru_cache(maxsize=1)  # the low frames' steady alignment and the head's following both use it
def real_video_motion(path: Path, size: int, weights_dir: Path | None) -> HeadMotion:
    """The head motion of a real video (--prepare-input) relative to its first frame, at `size` px: its
    faces tracked and cut with `prepare`'s steady crop (one box for the clip) and registered as `prepare`
    registers them (`motion.estimate_motion`)."""
    from facenhance_cli import faces
    from facenhance_cli.motion import estimate_motion

    frames, landmarks = tracked_video(path, weights_dir)
    box = faces.steady_crop_box(landmarks, frames[0].shape[:2])
    high = np.stack([faces.crop_resize(f, box, size) for f in frames])
    points = faces.box_to_crop(landmarks, box, size)
    return estimate_motion(high[0], high, points, points[0])
