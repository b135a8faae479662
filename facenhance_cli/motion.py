"""Head motion: where each frame's head is relative to the identity image's, and the head moved there.

The aligned low frames carry no head position, so the network draws every frame at the identity image's
head pose. When the motion is known (`prepare` measures it; a user may write it), the drawn head (face,
hair, ears, neck) is moved by it, and the background around it follows less and less over a band (one
continuous warp, `HeadLayer.move`): no ghost of the old head, no seam along a cut-out head's edge.

A motion is one similarity per frame taking identity-pose pixels to that frame's pixels,
    x' = scale R(rotation) (x - c) + c + side (tx, ty),
c the image centre and side its width: the CSV file of `--motion` has one row per frame with the columns
of MOTION_COLUMNS (`read_motion`, `write_motion`), so it holds for any output size.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facenhance_cli.errors import UsageError

MOTION_FILE = "motion.csv"  # what `prepare` writes in each clip folder
MOTION_COLUMNS = ("frame", "scale", "rotation_deg", "tx", "ty")
MOTION_HEADER = (
    "# facenhance head motion v1: per frame, the similarity taking the identity image's head pose to the "
    "frame's: x' = scale R(rotation_deg) (x - c) + c + side (tx, ty), c the image centre, side its width"
)
EYES, MOUTH, LOWER_JAW = range(36, 48), range(48, 68), range(3, 14)  # 68-point (iBUG 300-W) indices
ECC_ITERATIONS = 100
ECC_EPS = 1e-6
MIN_GAIN = 0.1  # a registered move is kept only when it lowers the head's squared error by this fraction
SCALE_RANGE = (0.5, 2.0)  # a head that halves or doubles between frames is not a head motion
SHIFT_LIMIT = 0.5  # |tx|, |ty| in image sides
STILL_PX = 0.05  # a move under this many pixels at every corner is no move
FOLLOW_BAND = 2.0  # the band the head's move fades over, in multiples of the move's largest displacement
MIN_BAND_PX = 8.0
FACE_MARGIN_PX = 4  # the face resampled with Lanczos: its landmarks' hull and this much around it
OUTSIDE_FADE_PX, OUTSIDE_BLUR_PX = 6.0, 12.0  # past the frame: the blurred border within this many px


@dataclass(frozen=True)
class HeadMotion:
    """Per-frame similarities as (scale, rotation in degrees, tx, ty) rows: (F, 4) float64."""

    params: np.ndarray

    def __len__(self) -> int:
        return len(self.params)

    def matrix(self, n: int, size: int) -> np.ndarray:
        """(2, 3) frame n's move of identity-pose pixels at `size` px to its own pixels."""
        scale, degrees, tx, ty = self.params[n]
        a = math.radians(degrees)
        rotation = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        centre = np.full(2, size / 2.0)
        shift = centre + size * np.array([tx, ty]) - rotation @ centre
        return np.concatenate([rotation, shift[:, None]], axis=1)

    def moves(self, size: int) -> bool:
        """True when some frame's head, at `size` px, is not where the identity image has it."""
        return any(not is_still(self.matrix(n, size), size) for n in range(len(self)))


def is_still(move: np.ndarray, size: int) -> bool:
    """True when the (2, 3) move shifts no corner of a size x size frame by STILL_PX or more."""
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    return bool(np.abs(corners @ move.T - corners[:, :2]).max() < STILL_PX)


def params_from_matrix(move: np.ndarray, size: int) -> np.ndarray:
    """(4,) scale, rotation_deg, tx, ty of a (2, 3) similarity at `size` px (the inverse of `matrix`)."""
    scale = math.sqrt(abs(np.linalg.det(move[:, :2])))
    degrees = math.degrees(math.atan2(move[1, 0], move[0, 0]))
    centre = np.full(2, size / 2.0)
    shift = (move[:, 2] - centre + move[:, :2] @ centre) / size
    return np.array([scale, degrees, shift[0], shift[1]], np.float64)


def motion_from_landmarks(landmarks: np.ndarray, size: int) -> HeadMotion:
    """The motion of (F, 68, 2) landmarks (pixels of a size x size frame) relative to frame 0's: a
    similarity fitted on the rigid points (Umeyama 1991), as `prepare`'s identity image is frame 0."""
    from facenhance_cli.faces import RIGID_POINTS
    from facenhance_cli.metrics.landmarks import fit_similarity

    rigid = list(RIGID_POINTS)
    moves = [fit_similarity(landmarks[0][rigid], points[rigid]) for points in landmarks]
    return HeadMotion(np.stack([params_from_matrix(m, size) for m in moves]))


def check_motion(params: np.ndarray, where: str) -> HeadMotion:
    """A HeadMotion from (F, 4) values, refused in one line when not finite or outside a sane range."""
    if params.ndim != 2 or params.shape[1] != 4 or not len(params):
        raise UsageError(f"{where}: expected rows of {', '.join(MOTION_COLUMNS)}")
    if not np.isfinite(params).all():
        raise UsageError(f"{where}: motion values must be finite numbers")
    low, high = SCALE_RANGE
    if ((params[:, 0] < low) | (params[:, 0] > high)).any():
        raise UsageError(f"{where}: scale must be in [{low}, {high}] (a head's size between frames)")
    if (np.abs(params[:, 2:]) > SHIFT_LIMIT).any():
        raise UsageError(f"{where}: tx and ty are fractions of the image side, at most {SHIFT_LIMIT} away")
    return HeadMotion(params)


def read_motion(path: str | os.PathLike[str], n_frames: int | None = None) -> HeadMotion:
    """A motion CSV (MOTION_COLUMNS, `#` comment lines allowed); with `n_frames`, one row per frame."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"motion file not found: {path}")
    lines = [line for line in path.read_text(encoding="utf-8-sig").splitlines() if not line.startswith("#")]
    reader = csv.DictReader(lines)
    missing = set(MOTION_COLUMNS) - set(reader.fieldnames or [])
    if missing:
        raise UsageError(
            f"{path}: missing column(s) {', '.join(sorted(missing))} (need {', '.join(MOTION_COLUMNS)})"
        )
    rows = []
    for line, row in enumerate(reader, 2):
        try:
            rows.append([float(row[key]) for key in MOTION_COLUMNS[1:]])
        except (TypeError, ValueError):
            raise UsageError(f"{path}:{line}: not a number in {dict(row)}") from None
    if n_frames is not None and len(rows) != n_frames:
        raise UsageError(f"{path} has {len(rows)} motion rows for a video of {n_frames} frames")
    return check_motion(np.array(rows, np.float64).reshape(-1, 4), str(path))


def motion_csv_text(motion: HeadMotion) -> str:
    """The CSV text of a motion (`read_motion` reads it back)."""
    lines = [MOTION_HEADER, ",".join(MOTION_COLUMNS)]
    for n, (scale, degrees, tx, ty) in enumerate(motion.params):
        lines.append(f"{n},{scale:.6f},{degrees:.4f},{tx:.6f},{ty:.6f}")
    return "\n".join(lines) + "\n"


def rigid_head_mask(landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 mask of the head outside the moving face: the landmark hull grown over forehead, hair
    and ears, minus the eyes, the mouth and the lower jaw (which move with the expression)."""
    import cv2

    points = np.asarray(landmarks, np.float64)
    extent = float(np.ptp(points, axis=0).max())
    hull = np.zeros(size, np.uint8)
    top = points.copy()
    top[:, 1] -= 0.45 * extent  # the forehead and hair above the brows
    cv2.fillConvexPoly(hull, cv2.convexHull(np.vstack([points, top]).astype(np.int32)), 1)
    head = np.asarray(cv2.dilate(hull, np.ones((2 * round(0.1 * extent) + 1,) * 2, np.uint8)), np.uint8)
    parts = np.zeros(size, np.uint8)
    for part in (EYES, MOUTH, LOWER_JAW):
        cv2.fillConvexPoly(parts, cv2.convexHull(points[list(part)].astype(np.int32)), 1)
    moving = np.asarray(cv2.dilate(parts, np.ones((2 * round(0.06 * extent) + 1,) * 2, np.uint8)), np.uint8)
    return head * (1 - moving)


def _ecc(
    gray_t: np.ndarray, gray_f: np.ndarray, start: np.ndarray, motion: int, mask: np.ndarray
) -> np.ndarray | None:
    """ECC's (2, 3) move of the frame onto the template from `start` (same direction), None without
    convergence. ECC's own warp maps template coordinates to frame coordinates: the inverse of ours."""
    import cv2

    warp = cv2.invertAffineTransform(start).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, ECC_EPS)
    try:
        _, found = cv2.findTransformECC(gray_t, gray_f, warp, motion, criteria, mask, 5)
    except cv2.error:
        return None
    return np.asarray(cv2.invertAffineTransform(np.asarray(found, np.float64)), np.float64)


def _head_error(gray_t: np.ndarray, gray_f: np.ndarray, move: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared grey-level error of the moved frame against the template on the covered head pixels."""
    import cv2

    h, w = gray_t.shape
    moved = cv2.warpAffine(gray_f, move, (w, h), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE)
    covered = cv2.warpAffine(np.ones_like(gray_f), move, (w, h), flags=cv2.INTER_LINEAR) > 0.999
    pixels = covered & (mask > 0)
    return float(((moved - gray_t)[pixels] ** 2).mean()) if pixels.any() else float("inf")


def _sane(to_identity: np.ndarray, size: int) -> bool:
    """True when the frame's move that `to_identity` (2, 3) undoes is within check_motion's limits."""
    import cv2

    scale, _, tx, ty = params_from_matrix(cv2.invertAffineTransform(to_identity), size)
    return SCALE_RANGE[0] <= scale <= SCALE_RANGE[1] and max(abs(tx), abs(ty)) <= SHIFT_LIMIT


def register_head(template: np.ndarray, frame: np.ndarray, start: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(2, 3) move taking `frame`'s head onto `template`'s ((H, W, 3) uint8 images): of no move, the
    landmark fit `start` and ECC registrations on `mask` (template pixels) from each, the one whose moved
    head matches the template best. ECC alone can drift (an affine fit on a near-static clip took the head
    2-3 dB further from the template than no move), and a landmark fit carries the landmarks' jitter."""
    import cv2

    gray_t = cv2.cvtColor(template, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gray_f = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    still = np.eye(2, 3)
    candidates: list[np.ndarray | None] = [still, start]
    candidates.append(_ecc(gray_t, gray_f, still, cv2.MOTION_EUCLIDEAN, mask))
    candidates.append(_ecc(gray_t, gray_f, start, cv2.MOTION_AFFINE, mask))
    # A move outside what a motion file may hold (check_motion) is a failed fit, never a head's motion.
    candidates = [c if c is not None and _sane(c, template.shape[1]) else None for c in candidates]
    errors = [(_head_error(gray_t, gray_f, c, mask), i) for i, c in enumerate(candidates) if c is not None]
    best_error, best_index = min(errors)
    best = candidates[best_index]
    assert best is not None
    # A move must earn its resampling: kept only when it takes a tenth or more off the head's error.
    return best if best_error < (1 - MIN_GAIN) * errors[0][0] else still


def estimate_motion(
    identity: np.ndarray, frames: np.ndarray, landmarks: np.ndarray, identity_landmarks: np.ndarray
) -> HeadMotion:
    """The head motion of (F, S, S, 3) uint8 frames relative to the (S, S, 3) identity image's pose, from
    their (F, 68, 2) and its (68, 2) landmarks (pixels): per frame a similarity on the rigid points refined
    by registering the head outside the eyes, mouth and jaw (`register_head`). On 14 test clips this moved
    the paste 1.0 dB closer to the truth (PSNR-U); the landmark fit alone cost a near-static clip 5 dB."""
    import cv2

    from facenhance_cli.faces import RIGID_POINTS
    from facenhance_cli.metrics.landmarks import fit_similarity

    size = identity.shape[0]
    rigid = list(RIGID_POINTS)
    mask = rigid_head_mask(identity_landmarks, identity.shape[:2])
    rows = []
    for frame, points in zip(frames, landmarks, strict=True):
        if not np.isfinite(points).all():
            rows.append(params_from_matrix(np.eye(2, 3), size))  # no face: the head stays
            continue
        to_identity = register_head(
            identity, frame, fit_similarity(points[rigid], identity_landmarks[rigid]), mask
        )
        rows.append(params_from_matrix(cv2.invertAffineTransform(to_identity), size))
    return HeadMotion(np.stack(rows))


def follow_band(move: np.ndarray, size: int) -> float:
    """Width in px of the band over which a (2, 3) `move` fades to none: FOLLOW_BAND times the largest
    displacement its inverse (the warp's own direction) makes in a size x size frame, so the fading warp
    never folds (smoothstep's slope is 1.5 / band), and at least MIN_BAND_PX."""
    import cv2

    back = cv2.invertAffineTransform(move)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    largest = float(np.linalg.norm(corners @ back.T - corners[:, :2], axis=1).max())  # affine: at a corner
    return max(MIN_BAND_PX, FOLLOW_BAND * largest)


def blurred_border(frame: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """(S, S, 3) float32 the (S, S, 3) uint8 frame blurred by OUTSIDE_BLUR_PX, its border carried outward,
    sampled at (map_x, map_y) px; blurred at a quarter of the size (a sixteenth of the work)."""
    import cv2

    size = frame.shape[0]
    small_size = max(1, size // 4)
    small = cv2.resize(frame, (small_size, small_size), interpolation=cv2.INTER_AREA).astype(np.float32)
    scale = small_size / size
    small = np.asarray(
        cv2.GaussianBlur(small, (0, 0), OUTSIDE_BLUR_PX * scale, borderType=cv2.BORDER_REPLICATE)
    )
    small_x, small_y = (map_x + 0.5) * scale - 0.5, (map_y + 0.5) * scale - 0.5  # pixel centres kept
    return cv2.remap(small, small_x, small_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class HeadLayer:
    """The identity image's head (face, hair, ears, neck) as an (S, S) float32 feathered mask, whose half
    level is the head's outline (`follow_weight`), and its face, resampled with Lanczos. Moving it warps
    the frame by one continuous field, the head's move on the head fading smoothly to none over a band
    around it (`follow_weight`): the background near the head stretches with it, so there is no seam where
    a cut-out head meets the background and nothing to fill where it was, and pixels beyond the band stay."""

    mask: np.ndarray
    face: np.ndarray  # (S, S) uint8: the landmarks' hull, grown by FACE_MARGIN_PX

    def follow_weight(self, move: np.ndarray) -> np.ndarray:
        """(S, S) float32 over the output frame: 1 on the moved head, falling to 0 (smoothstep) at
        `follow_band` px from it."""
        import cv2

        size = self.mask.shape[0]
        moved = cv2.warpAffine(self.mask, move, (size, size), flags=cv2.INTER_LINEAR) >= 0.5
        distance = cv2.distanceTransform((~moved).astype(np.uint8), cv2.DIST_L2, 5)  # px to the moved head
        ramp = np.clip(1.0 - distance / follow_band(move, size), 0.0, 1.0)
        return (ramp * ramp * (3.0 - 2.0 * ramp)).astype(np.float32)

    def source_map(self, move: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(S, S) float32 x and y of the frame pixel each output pixel y shows, y + w(y) (move^-1(y) - y),
        and w, the `follow_weight`: the head rigidly moved, the background beyond the band still."""
        import cv2

        from facenhance_cli.flowwarp import pixel_grid

        weight = self.follow_weight(move)  # (S, S)
        xs, ys = pixel_grid(self.mask.shape[0])
        back = cv2.invertAffineTransform(move).astype(np.float32)  # output px -> frame px, rigidly
        rigid_x = back[0, 0] * xs + back[0, 1] * ys + back[0, 2]
        rigid_y = back[1, 0] * xs + back[1, 1] * ys + back[1, 2]
        return xs + weight * (rigid_x - xs), ys + weight * (rigid_y - ys), weight

    def move(self, frame: np.ndarray, move: np.ndarray) -> np.ndarray:
        """(S, S, 3) uint8 frame drawn at the identity's pose with its head moved by the (2, 3) `move`
        (`source_map`); beyond the band the frame's own pixels, exactly."""
        import cv2

        size = frame.shape[0]
        if is_still(move, size):
            return frame
        map_x, map_y, weight = self.source_map(move)
        out = cv2.remap(frame, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        # Lanczos (5x cubic's time a pixel) where the detail is, the face: cubic cost it 0.03 of sharpness.
        face = np.nonzero(cv2.warpAffine(self.face, move, (size, size), flags=cv2.INTER_NEAREST))
        if len(face[0]):
            at_face = (map_x[face][None], map_y[face][None])  # (1, P) each: the face's pixels as one row
            out[face] = cv2.remap(frame, *at_face, cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE)[0]
        # Where the warp reaches past the frame there is nothing to show: the border's colours, blurred
        # more the further out, rather than streaks of its pixels.
        outside = np.maximum(np.maximum(-map_x, map_x - (size - 1)), np.maximum(-map_y, map_y - (size - 1)))
        if (outside > 0).any():
            fade = np.clip(outside / OUTSIDE_FADE_PX, 0.0, 1.0)  # (S, S)
            far = np.clip(blurred_border(frame, map_x, map_y) + 0.5, 0, 255).astype(np.uint8)
            out = cv2.blendLinear(out, far, 1.0 - fade, fade)
        np.copyto(out, frame, where=(weight == 0)[..., None])  # beyond the band: the frame's own pixels
        return out


def head_layer(identity: np.ndarray, landmarks: np.ndarray) -> HeadLayer:
    """The head of an (S, S, 3) uint8 identity image around its (68, 2) landmarks: the face hull grown up
    over the forehead and hair, sideways over the ears and down over the neck, feathered."""
    import cv2

    size = identity.shape[0]
    points = np.asarray(landmarks, np.float64)
    extent = float(np.ptp(points, axis=0).max())
    up, neck = points.copy(), points[3:14].copy()  # the jaw line, moved down for the neck
    up[:, 1] -= 0.7 * extent
    neck[:, 1] += 0.35 * extent
    hull = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.vstack([points, up]).astype(np.int32)), 1)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.vstack([points[3:14], neck]).astype(np.int32)), 1)
    grown = cv2.dilate(hull, np.ones((2 * round(0.12 * extent) + 1,) * 2, np.uint8))
    mask = cv2.GaussianBlur(grown.astype(np.float32), (0, 0), max(1.0, 0.03 * extent))
    face_hull = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(face_hull, cv2.convexHull(points.astype(np.int32)), 1)
    face = cv2.dilate(face_hull, np.ones((2 * FACE_MARGIN_PX + 1,) * 2, np.uint8))
    return HeadLayer(np.clip(mask, 0.0, 1.0), np.asarray(face, np.uint8))
