"""Face sharpness (ours): how much fine detail a video's face region holds, relative to the ground truth.

The mean absolute Laplacian (4-neighbour, of the grey image) inside the convex hull of the ground truth's
68 landmarks, per frame; a video's score is the mean over frames of the output's value over the mean of the
ground truth's. 1 is as sharp as the truth; a paste blurred up from 64 px scores well below.
"""

from __future__ import annotations

import numpy as np


def face_region(landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the convex hull of one frame's (68, 2) landmarks."""
    import cv2

    mask = np.zeros(size, np.uint8)
    hull = cv2.convexHull(np.round(landmarks).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)


def laplacian_energy(frames: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(F,) mean |Laplacian| of the grey (F, H, W, 3) uint8 frames inside each frame's landmark hull."""
    import cv2

    out = np.zeros(len(frames))
    for i, (frame, points) in enumerate(zip(frames, landmarks, strict=True)):
        grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY).astype(np.float64)
        lap = np.abs(cv2.Laplacian(grey, cv2.CV_64F, ksize=1))  # 4-neighbour kernel
        region = face_region(points, grey.shape)
        out[i] = lap[region].mean() if region.any() else np.nan
    return out


def sharpness_ratio(frames: np.ndarray, truth: np.ndarray, truth_landmarks: np.ndarray) -> float | None:
    """Mean face Laplacian energy of `frames` over that of `truth`, both in the truth's face regions."""
    ours = laplacian_energy(frames, truth_landmarks)
    theirs = laplacian_energy(truth, truth_landmarks)
    ok = np.isfinite(ours) & np.isfinite(theirs)
    if not ok.any() or theirs[ok].mean() <= 0:
        return None
    return float(ours[ok].mean() / theirs[ok].mean())
