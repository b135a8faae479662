"""The low frame's face pasted onto the identity image: a conditioning image that carries the expression.

Not in the paper (an extension of ours, `unet.use_pasted_frame`). The 64x64 low frame is an aligned face
on black, so where it sits in the identity image is a similarity transform away. We find that transform by
registering the first low frame onto the identity image (a coarse search over scale and rotation with
normalised cross-correlation, refined with ECC; Evangelidis & Psarakis 2008), which needs no landmark
model. Every low frame of a video is then warped with it and feathered onto the identity image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from facenhance_cli.config import ConditioningConfig
from facenhance_cli.faces.alignment import as_3x3

BLACK_LEVEL = 12  # low-frame pixels at or below this (all channels) are background; codecs leave noise
FEATHER_SIGMA = 2.0  # px at the identity's size: blur of the pasted face's edge
# Identity px per low px for prepare's defaults (192 from 64, crop scale 1.8): 1.3 .. 2.7; other sizes
# scale it by (S / 192) / (L / 64).
SEARCH_SCALES = tuple(1.3 * 1.075**k for k in range(11))
SEARCH_ANGLES = tuple(range(-24, 25, 8))  # degrees; ECC closes the gaps; crops are seldom tilted more
MIN_SCORE = 0.75  # below this correlation, a note: the shared clips score 0.93-1.0, other people 0.48-0.68
# The edit mask: the pasted face grown by a margin (px at 192: `conditioning.edit_margin`, 16 by default)
# and feathered by EDIT_FEATHER px. Its Gaussian has finite support, so far from the face it is exactly 0
# and a model that multiplies its edit by it returns the identity image there, bit for bit.
EDIT_MARGIN = ConditioningConfig.edit_margin
EDIT_FEATHER = 4.0


def low_face_mask(low_frame: np.ndarray) -> np.ndarray:
    """(L, L) float32 in {0, 1}: the face of a (L, L, 3) uint8 low frame, eroded by 1 px.

    The face is everything but the black background that reaches the frame's edge (dark pupils, nostrils and
    an open mouth inside the face are face), and, since prepare's mask is a convex hull of landmarks
    (`faces.face_mask`), whatever lies 1 px inside the hull of that face (a black beard on the jaw line).
    """
    import cv2

    kernel = np.ones((3, 3), np.uint8)
    black = (low_frame.max(axis=-1) <= BLACK_LEVEL).astype(np.uint8)
    # Outside the frame counts as black, so a face cut by the frame's edge is feathered there too.
    padded = cv2.copyMakeBorder(black, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=1)
    cv2.floodFill(padded, None, (0, 0), 2, flags=4)
    face = (padded[1:-1, 1:-1] != 2).astype(np.uint8)
    hull = _largest_hull(face)
    face |= cv2.erode(hull, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)  # off the hull's dark rim
    return cv2.erode(face, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(np.float32)


def _largest_hull(mask: np.ndarray) -> np.ndarray:
    """(L, L) uint8: the filled convex hull of the largest 8-connected region of a {0, 1} uint8 mask."""
    import cv2

    hull = np.zeros_like(mask)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        return hull
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    points = np.argwhere(labels == largest)[:, ::-1].astype(np.int32)  # (N, 2) x, y
    cv2.fillConvexPoly(hull, cv2.convexHull(points), 1)
    return hull


def _gray(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)


def locate_low_face(identity_image: np.ndarray, low_frame: np.ndarray) -> tuple[np.ndarray, float]:
    """(2, 3) affine taking low-frame pixels to identity pixels, and its correlation score in [-1, 1].

    identity_image (S, S, 3) and low_frame (L, L, 3) uint8 RGB, the low frame showing the identity's
    face (aligned, on black). Coarse: the best masked normalised cross-correlation over SEARCH_SCALES x
    SEARCH_ANGLES; fine: ECC with an affine model on the full-size identity image.
    """
    import cv2

    low_size = low_frame.shape[0]
    mask = low_face_mask(low_frame)
    if mask.sum() < 0.05 * low_size * low_size:
        return _default_matrix(identity_image.shape[0], low_size), -1.0
    low_gray, identity_gray = _gray(low_frame), _gray(identity_image)
    centre = ((low_size - 1) / 2.0, (low_size - 1) / 2.0)
    pad = low_size // 2
    best_score, best = -2.0, _default_matrix(identity_image.shape[0], low_size)
    size_ratio = (identity_image.shape[0] / 192) / (low_size / 64)
    for angle in SEARCH_ANGLES:
        rotation = cv2.getRotationMatrix2D(centre, angle, 1.0)  # low px -> rotated low px
        template = cv2.warpAffine(low_gray, rotation, (low_size, low_size), flags=cv2.INTER_LINEAR)
        template_mask = cv2.warpAffine(mask, rotation, (low_size, low_size), flags=cv2.INTER_NEAREST)
        for scale in SEARCH_SCALES:
            side = round(identity_image.shape[0] / (scale * size_ratio))
            if side < 8:
                continue
            small = cv2.resize(identity_gray, (side, side), interpolation=cv2.INTER_AREA)
            # Faces may reach past the crop's edge (prepare replicates edges there): search beyond it too.
            small = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            scores = cv2.matchTemplate(small, template, cv2.TM_CCOEFF_NORMED, mask=template_mask)
            scores[~np.isfinite(scores)] = -2.0
            _, score, _, (x, y) = cv2.minMaxLoc(scores)
            x, y = x - pad, y - pad
            if score > best_score:
                s = identity_image.shape[0] / side  # exact scale after rounding the side
                # rotated low px -> small px (shift by the match) -> identity px (pixel centres kept).
                to_identity = np.array([[s, 0.0, s * (x + 0.5) - 0.5], [0.0, s, s * (y + 0.5) - 0.5]])
                best_score, best = score, (as_3x3(to_identity) @ as_3x3(rotation))[:2]
    # ECC needs a mask on the low frame (its black background must not count); OpenCV 5.0 has that
    # variant, older releases may not, and then the coarse estimate stands (2-5 px off at 192 px).
    ecc_with_mask = getattr(cv2, "findTransformECCWithMask", None)
    if ecc_with_mask is None:
        return best, float(best_score)
    warp = best.astype(np.float32)
    # ECC samples the identity image at low-frame pixels, ~2x sparser: blur it first against aliasing.
    sigma = 0.5 * math.sqrt(abs(np.linalg.det(best[:, :2])))
    identity_smooth = cv2.GaussianBlur(identity_gray, (0, 0), sigma)
    try:
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
        valid = np.full(identity_gray.shape, 255, np.uint8)
        score, warp = ecc_with_mask(
            low_gray,
            identity_smooth,
            (mask * 255).astype(np.uint8),
            valid,
            warp,
            cv2.MOTION_AFFINE,
            criteria,
            3,
        )
        if _plausible(warp.astype(np.float64), best):
            best, best_score = warp.astype(np.float64), float(score)
    except cv2.error:  # ECC did not converge: keep the coarse estimate
        pass
    return best, float(best_score)


def _plausible(refined: np.ndarray, coarse: np.ndarray) -> bool:
    """ECC may drift on flat images: accept it only near the coarse estimate and close to a similarity."""
    a = refined[:, :2]
    scale = math.sqrt(abs(np.linalg.det(a)))
    coarse_scale = math.sqrt(abs(np.linalg.det(coarse[:, :2])))
    shear = abs(a[0, 0] - a[1, 1]) + abs(a[0, 1] + a[1, 0])
    moved = np.abs(refined[:, 2] - coarse[:, 2]).max()
    return 0.8 < scale / coarse_scale < 1.25 and shear < 0.25 * scale and moved < 16 * scale  # 16 low px


def _default_matrix(size: int, low_size: int) -> np.ndarray:
    """The low face centred in the identity image at the typical scale of `prepare`'s crops."""
    scale = SEARCH_SCALES[len(SEARCH_SCALES) // 2] * (size / 192) / (low_size / 64)
    offset = (size - 1) / 2.0 - scale * (low_size - 1) / 2.0
    return np.array([[scale, 0.0, offset], [0.0, scale, offset]])


@dataclass(frozen=True)
class WarpedLowFace:
    """One low frame's face warped into the identity image: what the paste, the gate and the edit mask
    share, so a frame's conditioning warps it once."""

    face: np.ndarray  # (S, S, 3) uint8: the low frame warped (bicubic)
    coverage: np.ndarray  # (S, S) float32 in [0, 1]: its face mask warped (bilinear), not yet feathered

    @cached_property
    def alpha(self) -> np.ndarray:
        """(S, S, 1) float32 in [0, 1]: the coverage feathered, the paste's blend weight (computed once)."""
        import cv2

        return cv2.GaussianBlur(self.coverage, (0, 0), FEATHER_SIGMA)[..., None]


def warp_low_face(low_frame: np.ndarray, matrix: np.ndarray, size: int) -> WarpedLowFace:
    """The (L, L, 3) uint8 low frame and its face mask warped by `matrix` (low px -> identity px)."""
    import cv2

    face = cv2.warpAffine(low_frame, matrix, (size, size), flags=cv2.INTER_CUBIC)  # (S, S, 3)
    return WarpedLowFace(face, _warp_coverage(low_frame, matrix, size))


def _warp_coverage(low_frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """(S, S) float32: the low frame's face mask warped (bilinear) by `matrix`."""
    import cv2

    return cv2.warpAffine(low_face_mask(low_frame), matrix, (size, size), flags=cv2.INTER_LINEAR)


def paste_low_face(
    identity_image: np.ndarray,
    low_frame: np.ndarray,
    matrix: np.ndarray,
    detail_sigma: float = 0.0,
    warped: WarpedLowFace | None = None,
) -> np.ndarray:
    """(S, S, 3) uint8: the low frame's face warped by `matrix` (low px -> identity px), feathered in.

    With `detail_sigma` > 0 (px), inside the face only the paste's change at scales above a Gaussian of
    that sigma is applied: identity + alpha (G(paste) - G(identity)). The low face, upscaled ~2-3x, has no
    finer detail of its own, and where the expression leaves the skin as it was, the identity's pores,
    hair and eyelashes are the truth's (a detail transfer; benchmarks/trivial_estimators.py). `warped`:
    `warp_low_face`'s result for this frame, when already computed.
    """
    import cv2

    warped = warped or warp_low_face(low_frame, matrix, identity_image.shape[0])
    alpha = warped.alpha  # (S, S, 1) in [0, 1]
    identity = identity_image.astype(np.float32)
    pasted = alpha * warped.face.astype(np.float32) + (1.0 - alpha) * identity
    if detail_sigma > 0:
        change = cv2.GaussianBlur(pasted, (0, 0), detail_sigma) - cv2.GaussianBlur(
            identity, (0, 0), detail_sigma
        )
        pasted = identity + alpha * change
    return np.clip(pasted + 0.5, 0, 255).astype(np.uint8)


# The expression gate's reach beyond the change that opened it (px at 192, scaled with the image): a dilation
# of this diameter, then a Gaussian of half of it. 11-21 px scored the same (docs/experiments.md).
GATE_GROW = 21
GATE_SIGMA = 2.0  # px: the scale of "coarse change", as the detail paste's sigma


# `conditioning.paste_face`'s unsharp mask of the kept face (experiments row 49): sigma in px at 192 (scaled
# with the size) and amount; amounts 0.3 / 0.6 / 1.5 gave face sharpness 0.84 / 0.95 / 1.27 of the truth's.
KEPT_FACE_SIGMA = 1.0
KEPT_FACE_AMOUNT = 0.6


def kept_face(
    identity_image: np.ndarray,
    low_frame: np.ndarray,
    matrix: np.ndarray,
    warped: WarpedLowFace | None = None,
    plain: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(S, S, 3) uint8 the plain paste, unsharp-masked, and (S, S, 1) float32 its face alpha: what a
    `conditioning.paste_face` model outputs inside the pasted face. `plain`: the plain paste, if known."""
    import cv2

    size = identity_image.shape[0]
    warped = warped or warp_low_face(low_frame, matrix, size)
    plain = plain if plain is not None else paste_low_face(identity_image, low_frame, matrix, 0.0, warped)
    paste = plain.astype(np.float32)  # (S, S, 3)
    blurred = cv2.GaussianBlur(paste, (0, 0), KEPT_FACE_SIGMA * size / 192)
    sharpened = np.clip(paste + KEPT_FACE_AMOUNT * (paste - blurred) + 0.5, 0, 255).astype(np.uint8)
    return sharpened, warped.alpha


def expression_gate(
    identity_image: np.ndarray,
    low_frame: np.ndarray,
    matrix: np.ndarray,
    levels: float,
    warped: WarpedLowFace | None = None,
    plain: np.ndarray | None = None,
) -> np.ndarray:
    """(S, S) float32 in [0, 1]: where the low face changed the identity's coarse appearance, grown.

    1 - exp(-(c / levels)^2), c the mean over channels of |G(paste) - G(identity)| in 8-bit levels (G a
    GATE_SIGMA Gaussian, the plain paste), then dilated and blurred by GATE_GROW. Where the expression left
    the face as the identity image has it (frame 0 of a clip whose identity is its first frame), the gate
    is 0 and so is the model's edit. `plain`: the plain paste (`paste_low_face`, no detail), if known.
    """
    import cv2

    size = identity_image.shape[0]
    identity = identity_image.astype(np.float32)
    if plain is None:
        plain = paste_low_face(identity_image, low_frame, matrix, warped=warped)
    pasted = plain.astype(np.float32)  # (S, S, 3)
    change = np.abs(
        cv2.GaussianBlur(pasted, (0, 0), GATE_SIGMA) - cv2.GaussianBlur(identity, (0, 0), GATE_SIGMA)
    ).mean(axis=-1)  # (S, S) levels
    gate = 1.0 - np.exp(-((change / levels) ** 2))
    grow = max(1, round(GATE_GROW * size / 192))
    gate = cv2.dilate(gate, np.ones((grow, grow), np.uint8))
    return np.clip(cv2.GaussianBlur(gate, (0, 0), grow / 2), 0.0, 1.0).astype(np.float32)


def face_scoped_gate(gate: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """`conditioning.edit_gate_scope = "face"`'s gate, shaped as `gate`: the expression gate inside the pasted
    face (alpha, its feathered mask, (S, S) or (S, S, 1)) and, in the ring around it, the gate's mean over the
    face: the jaw line, hair and ears follow as much of the face as changed (experiments row 58)."""
    face = alpha.reshape(gate.shape)
    ring = float((face * gate).sum() / max(float(face.sum()), 1e-6))  # in [0, 1]
    return (face * gate + (1.0 - face) * ring).astype(np.float32)


def edit_mask(
    low_frame: np.ndarray,
    matrix: np.ndarray,
    size: int,
    warped: WarpedLowFace | None = None,
    margin: int = EDIT_MARGIN,
) -> np.ndarray:
    """(S, S) float32 in [0, 1]: where a model may change the identity image (the pasted face, grown by
    `margin` px at 192)."""
    import cv2

    scale = size / 192
    coverage = warped.coverage if warped is not None else _warp_coverage(low_frame, matrix, size)
    face = coverage > 0
    radius = max(1, round(margin * scale))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    grown = cv2.dilate(face.astype(np.uint8), kernel).astype(np.float32)
    sigma = EDIT_FEATHER * scale
    # Blur inside the grown region only (erode first) so the mask reaches 0 where the growth ends.
    inner = cv2.erode(grown, np.ones((2 * round(2 * sigma) + 1,) * 2, np.uint8))
    return np.clip(cv2.GaussianBlur(inner, (0, 0), sigma), 0.0, 1.0)
