"""The identity image moved by the low face's optical flow: a conditioning image with the expression's motion.

Not in the paper (ours, `unet.use_flow_frame`; the quality issue's motion-aware input). The low frame is
compared with the identity image seen the way a low frame sees a face (warped into the low frame's
coordinates, antialiased, on black outside the same face mask); dense optical flow between the two (OpenCV
DIS, Kroeger et al. 2016) says where each of the low face's pixels comes from in the identity's face. That
flow, carried into the identity's coordinates through the paste's affine registration and faded to 0 at the
face's edge, moves the identity's own sharp detail (pores, lashes, teeth edges) with the eyes and mouth, which
neither the paste (no detail) nor the detail paste (still detail) can do. Everything outside the low face
is the identity image's pixels.
"""

from __future__ import annotations

import functools

import numpy as np

# Flow is measured at the low frame's resolution scaled by this: the upscaled frames give DIS patches
# (8 px) of 4 low px, fine enough for an eye or a lip.
FLOW_UPSCALE = 2
SUPERSAMPLE = 3  # the identity warped at this many times the low size, then area-averaged (antialiasing)


def identity_as_low(identity_image: np.ndarray, matrix: np.ndarray, low_size: int) -> np.ndarray:
    """(L, L, 3) uint8: the identity image in the low frame's coordinates (`matrix` maps low px -> identity
    px), antialiased as prepare's downscale is."""
    import cv2

    k = SUPERSAMPLE
    # low px p (at k times the size, centre-aligned) -> identity px: M ((p + 0.5) / k - 0.5)
    up = np.array([[1.0 / k, 0.0, 0.5 / k - 0.5], [0.0, 1.0 / k, 0.5 / k - 0.5], [0.0, 0.0, 1.0]])
    to_identity = np.vstack([matrix, [0.0, 0.0, 1.0]]) @ up  # (3, 3) big low px -> identity px
    big = cv2.warpAffine(
        identity_image,
        to_identity[:2],
        (low_size * k, low_size * k),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return cv2.resize(big, (low_size, low_size), interpolation=cv2.INTER_AREA)


def low_flow(reference: np.ndarray, low_frame: np.ndarray, face: np.ndarray) -> np.ndarray:
    """(L, L, 2) float32 displacement in low px: `low_frame` at p shows what `reference` has at p + d(p).

    Both (L, L, 3) uint8, compared inside the same `face` mask (L, L) so the face's outline does not move."""
    import cv2

    size = low_frame.shape[0] * FLOW_UPSCALE
    grays = []
    for image in (low_frame, reference):
        gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        gray = (gray * face).astype(np.uint8)  # (L, L) black outside the face in both
        grays.append(cv2.resize(gray, (size, size), interpolation=cv2.INTER_CUBIC))
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    flow = dis.calc(grays[0], grays[1], None)  # type: ignore[call-overload]  # (2L, 2L, 2) upscaled px
    small = cv2.resize(flow, (low_frame.shape[0],) * 2, interpolation=cv2.INTER_AREA)
    return (small / FLOW_UPSCALE).astype(np.float32)


def flow_frame(
    identity_image: np.ndarray, low_frame: np.ndarray, matrix: np.ndarray, coverage: np.ndarray
) -> np.ndarray:
    """(S, S, 3) uint8: the identity image moved by the low face's flow (module docstring).

    `matrix` (2, 3) maps low px to identity px; `coverage` (S, S) is the low face mask warped into the identity
    image (`pasting.WarpedLowFace.coverage`), the flow's weight: 1 inside the face, 0 outside it."""
    import cv2

    from facenhance_cli.pasting import low_face_mask

    size, low_size = identity_image.shape[0], low_frame.shape[0]
    reference = identity_as_low(identity_image, matrix, low_size)
    flow = low_flow(reference, low_frame, low_face_mask(low_frame))  # (L, L, 2) low px
    # The flow at each identity px q is the flow at M^-1 q (a warp of the field), its vectors taken through
    # M's linear part into identity px, and faded to 0 across the face's edge.
    sampled = cv2.warpAffine(flow, matrix, (size, size), flags=cv2.INTER_LINEAR)  # (S, S, 2) low px
    shift = cv2.transform(sampled, np.hstack([matrix[:, :2], np.zeros((2, 1))]))  # (S, S, 2) identity px
    weight = cv2.GaussianBlur(coverage, (0, 0), 2.0) * coverage  # (S, S) 1 inside the face, 0 at its edge
    xs, ys = pixel_grid(size)
    map_x = xs + shift[..., 0] * weight  # (S, S) float32
    map_y = ys + shift[..., 1] * weight
    return cv2.remap(identity_image, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


@functools.lru_cache(maxsize=4)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, S) float32 x and y of every pixel (read only: shared by every frame)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    xs.flags.writeable = ys.flags.writeable = False
    return xs, ys
