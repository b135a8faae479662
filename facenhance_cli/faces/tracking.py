"""One face followed through a clip: boxes tracked over frames, landmarks fitted, gaps filled, smoothed.

A clip's landmarks are (F, 68, 2), NaN for frames where no face was found.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from facenhance_cli.errors import NoFaceError
from facenhance_cli.faces.detection import FaceBox, LandmarkDetector, iou

# ----------------------------------------------------------------------------------------------------------
# Temporal clean-up


def interpolate_missing(landmarks: np.ndarray) -> np.ndarray:
    """(F, 68, 2) with NaN frames -> linearly interpolated along time; ends hold the nearest found frame."""
    lms = np.asarray(landmarks, np.float64)
    found = ~np.isnan(lms).reshape(len(lms), -1).any(axis=1)
    if not found.any():
        raise NoFaceError("no face found in any frame")
    t = np.arange(len(lms))
    flat = lms.reshape(len(lms), -1)
    out = np.empty_like(flat)
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(t, t[found], flat[found, j])
    return out.reshape(lms.shape)


def gaussian_smooth(landmarks: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter along time (axis 0) with edge padding; sigma in frames, 0 leaves them unchanged."""
    lms = np.asarray(landmarks, np.float64)
    if sigma <= 0 or len(lms) < 2:
        return lms.copy()
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.concatenate([np.repeat(lms[:1], radius, 0), lms, np.repeat(lms[-1:], radius, 0)])
    out = np.zeros_like(lms)
    for k, weight in zip(taps, kernel, strict=True):
        out += weight * padded[radius + k : radius + k + len(lms)]
    return out


def track_boxes(per_frame: list[list[FaceBox]], min_iou: float = 0.3) -> list[FaceBox | None]:
    """Follow one face through a clip: the most consistent (then largest) face, matched by IoU frame to frame.

    The anchor is the box seen in the most frames (IoU >= min_iou with a box there), ties broken by
    area; it is then followed forwards and backwards, each frame taking the best-overlapping box with
    the last accepted one; frames with no overlapping box are None (interpolated later).
    """
    candidates = [(i, b) for i, boxes in enumerate(per_frame) for b in boxes]
    if not candidates:
        return [None] * len(per_frame)

    def support(box: FaceBox) -> int:
        return sum(any(iou(box, other) >= min_iou for other in boxes) for boxes in per_frame)

    anchor_frame, anchor = max(candidates, key=lambda c: (support(c[1]), c[1].area))
    chosen: list[FaceBox | None] = [None] * len(per_frame)
    chosen[anchor_frame] = anchor
    for direction in (1, -1):
        last = anchor
        i = anchor_frame + direction
        while 0 <= i < len(per_frame):
            best = max(per_frame[i], key=lambda b: iou(b, last), default=None)
            if best is not None and iou(best, last) >= min_iou:
                chosen[i] = best
                last = best
            i += direction
    return chosen


@dataclass(frozen=True)
class ClipLandmarks:
    """Landmarks of one face followed through a clip, and how they were obtained."""

    landmarks: np.ndarray  # (F, 68, 2) interpolated and smoothed: what crops and alignment use
    raw: np.ndarray  # (F, 68, 2) as fitted, NaN where no face was found
    found: np.ndarray  # (F,) bool: a detector found the face in this frame
    faces_max: int  # most faces seen in one frame
    n_missing: int  # frames without a detection
    n_recovered: int  # of those, frames whose landmarks were fitted around the neighbours' guess


def track_landmarks(
    frames: list[np.ndarray],
    detector: LandmarkDetector,
    smooth: float = 1.0,
    on_frame: Callable[[int], None] | None = None,
) -> ClipLandmarks:
    """Detect every frame, follow one face, fit its landmarks, fill the gaps, smooth along time.

    Frames without a detection get landmarks fitted around the positions interpolated from their
    neighbours (detectors miss turned or blurred faces the landmark model still handles); what stays
    missing is interpolated. NoFaceError when no frame has a face.
    """
    per_frame = []
    for frame in frames:
        per_frame.append(detector.detect_faces(frame))
        if on_frame:
            on_frame(1)
    chosen = track_boxes(per_frame)
    raw = np.full((len(frames), 68, 2), np.nan)
    for i, face_box in enumerate(chosen):
        if face_box is not None:
            raw[i] = detector.landmarks_in_box(frames[i], face_box)
    found = ~np.isnan(raw[:, 0, 0])
    if not found.any():
        raise NoFaceError("no face found")
    n_recovered = 0
    if not found.all():
        guess = interpolate_missing(raw)
        for j in np.flatnonzero(~found):
            fitted = detector.landmarks_near(frames[j], guess[j])
            if fitted is not None:
                raw[j] = fitted
                n_recovered += 1
    landmarks = gaussian_smooth(interpolate_missing(raw), smooth)
    return ClipLandmarks(
        landmarks=landmarks,
        raw=raw,
        found=found,
        faces_max=max(len(b) for b in per_frame),
        n_missing=int((~found).sum()),
        n_recovered=n_recovered,
    )
