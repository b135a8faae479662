"""Head-aligned truth for `eval --align-truth`: each ground-truth frame moved onto the identity image's pose.

The aligned low frames carry no head position, so a method given them can only leave the head where the
identity image has it; the maintainers' decision (issue 22) is to measure quality targets against truth
frames whose head was moved back onto that pose. The move is the inverse of the clip's head motion
(`motion.estimate_motion`: rigid landmarks refined by registering the head), the same motion `enhance`
follows. Pixels the move leaves unknown are left out of every pixel metric (`valid`) and filled with the
identity image's for FVD, the same for every method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facenhance_cli.motion import HeadMotion, is_still

ALIGNMENT_NOTE = (
    "each truth frame's head moved onto the identity image's pose by the inverse of the clip's head motion "
    "(prepare's motion.csv, else estimated: a similarity on the rigid landmarks refined by ECC on the head "
    "outside the eyes, mouth and jaw, kept only when it takes a tenth off the head's error); the background "
    "stays; pixels the move leaves unknown "
    "(uncovered, or hidden by the head before) are left out of PSNR and SSIM and take the identity image's "
    "for FVD, for every method alike"
)


@dataclass(frozen=True)
class AlignedTruth:
    """Truth frames on the identity image's head pose, and where each is covered by its source frame."""

    frames: np.ndarray  # (F, H, W, 3) uint8
    valid: np.ndarray  # (F, H, W) bool
    moved: np.ndarray  # (F,) bool: frames that were warped (the others are the raw truth)


def head_region(landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the whole head around (68, 2) landmarks (face, forehead, hair, ears), what moves with it."""
    import cv2

    points = np.asarray(landmarks, np.float64)
    extent = float(np.ptp(points, axis=0).max())
    top = points.copy()
    top[:, 1] -= 0.6 * extent
    region = np.zeros(size, np.uint8)
    cv2.fillConvexPoly(region, cv2.convexHull(np.vstack([points, top]).astype(np.int32)), 1)
    return cv2.dilate(region, np.ones((2 * round(0.15 * extent) + 1,) * 2, np.uint8)) > 0


def align_truth(gt: np.ndarray, motion: HeadMotion, identity_landmarks: np.ndarray) -> AlignedTruth:
    """Move each (F, S, S, 3) truth frame's head back onto the identity image's pose (the inverse of its
    `motion`, `motion.estimate_motion`), the background staying. Inside the identity's head region (around
    its (68, 2) landmarks) the moved frame is taken, outside it the raw frame; where the raw head was but the
    moved one is not (background it hid), and where the moved frame does not reach, nothing is known: those
    pixels are not `valid`."""
    import cv2

    size = gt.shape[1]
    head = head_region(identity_landmarks, gt.shape[1:3])
    frames, valid = gt.copy(), np.ones(gt.shape[:3], bool)
    moved = np.zeros(len(gt), bool)
    for n, frame in enumerate(gt):
        move = cv2.invertAffineTransform(motion.matrix(n, size))
        if is_still(move, size):
            continue
        frames[n], valid[n] = _moved_head(frame, move, head)
        moved[n] = True
    return AlignedTruth(frames, valid, moved)


def _moved_head(frame: np.ndarray, move: np.ndarray, head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) frame with its head moved by `move` into the `head` region, and its (H, W) valid pixels."""
    import cv2

    h, w = head.shape
    warped = cv2.warpAffine(frame, move, (w, h), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE)
    covered = cv2.warpAffine(np.ones((h, w), np.float32), move, (w, h), flags=cv2.INTER_LINEAR) > 0.999
    back = cv2.invertAffineTransform(move)
    head_before = cv2.warpAffine(head.astype(np.uint8), back, (w, h), flags=cv2.INTER_NEAREST) > 0
    out = np.where(head[..., None], warped, frame)
    valid = np.where(head, covered, ~head_before)
    seam = cv2.dilate(head.astype(np.uint8), np.ones((5, 5), np.uint8)) > cv2.erode(
        head.astype(np.uint8), np.ones((5, 5), np.uint8)
    )
    return out, valid & ~seam
