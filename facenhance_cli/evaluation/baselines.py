"""Trivial baselines scored beside the method: the identity image, the low frames upscaled, the paste."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from facenhance_cli.motion import HeadMotion

DETAIL_SIGMA = 2.0  # px at 192: the detail baseline's Gaussian, as the small preset's paste_detail_sigma


def identity_baseline(identity: np.ndarray, n_frames: int, size: tuple[int, int]) -> np.ndarray:
    """The (H, W, 3) identity image resized to `size` (h, w) and repeated: (F, h, w, 3) uint8."""
    return np.repeat(resize(identity, size)[None], n_frames, axis=0)


def paste_baseline(
    identity: np.ndarray, low: np.ndarray, detail_sigma: float = 0.0, matrix: np.ndarray | None = None
) -> np.ndarray:
    """(F, S, S, 3) uint8: each (F, L, L, 3) low frame's face pasted on the (S, S, 3) identity image;
    with `detail_sigma` (px at 192) keeping the identity's finer detail (`pasting.paste_low_face`).
    `matrix`: the low-to-identity warp when already registered (else from the first low frame)."""
    from facenhance_cli.pasting import locate_low_face, paste_low_face

    if matrix is None:
        matrix, _ = locate_low_face(identity, low[0])
    sigma = detail_sigma * identity.shape[0] / 192
    return np.stack([paste_low_face(identity, frame, matrix, sigma) for frame in low])


def bicubic_baseline(low: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(F, h0, w0, 3) uint8 low frames upscaled bicubically to `size` (h, w): (F, h, w, 3) uint8."""
    import cv2

    return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_CUBIC) for f in low])


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if image.shape[:2] == size:
        return image
    shrink = image.shape[0] > size[0]
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


NEEDS = {
    "identity": "an identity image",
    "bicubic": "a low video",
    "paste": "a low video and an identity image",
    "detail": "a low video and an identity image",
    "paste+motion": "a low video, an identity image and the head motion (prepare's motion.csv or landmarks)",
}


def moved_paste(
    paste: np.ndarray, motion: HeadMotion, identity: np.ndarray, identity_landmarks: np.ndarray
) -> np.ndarray:
    """(F, S, S, 3) the paste with its head moved by the clip's motion, as `enhance` moves its output."""
    from facenhance_cli.motion import head_layer

    layer = head_layer(identity, identity_landmarks)
    size = paste.shape[1]
    return np.stack([layer.move(frame, motion.matrix(n, size)) for n, frame in enumerate(paste)])


def baseline_videos(
    baselines: tuple[str, ...],
    identity: np.ndarray | None,
    low: np.ndarray | None,
    gt: np.ndarray,
    motion: tuple[HeadMotion, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Each asked-for baseline that one clip's inputs allow, like the (F, h, w, 3) `gt`; and the others' notes.

    `identity` is already at the ground truth's size; `low` is the (F, L, L, 3) low video; `motion` the
    clip's head motion and the identity image's (68, 2) landmarks.
    """
    size = gt.shape[1:3]
    videos: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    matrix = None  # the paste's registration, shared by the paste and detail baselines
    if low is not None and identity is not None and {"paste", "detail", "paste+motion"} & set(baselines):
        from facenhance_cli.pasting import locate_low_face

        matrix, _ = locate_low_face(identity, low[0])
    for baseline in baselines:
        if baseline == "identity" and identity is not None:
            videos["identity"] = identity_baseline(identity, len(gt), size)
        elif baseline == "bicubic" and low is not None:
            videos["bicubic"] = bicubic_baseline(low, size)
        elif baseline == "paste" and low is not None and identity is not None:
            videos["paste"] = paste_baseline(identity, low, matrix=matrix)
        elif baseline == "detail" and low is not None and identity is not None:
            videos["detail"] = paste_baseline(identity, low, DETAIL_SIGMA, matrix)
        elif baseline == "paste+motion" and low is not None and identity is not None and motion is not None:
            paste = videos.get("paste", paste_baseline(identity, low, matrix=matrix))
            videos["paste+motion"] = moved_paste(paste, motion[0], identity, motion[1])
        else:
            skipped.append(f"baseline {baseline} skipped: it needs {NEEDS.get(baseline, NEEDS['paste'])}")
    return videos, skipped
