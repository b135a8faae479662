"""OpenFace-style masked alignment of the low frame, the steady high crop, and the identity image's crop.

The low frame (METHOD.md, "Data preparation") reproduces OpenFace 2.x `-simalign`
(FaceAnalyser `AlignFaceMask`): a similarity transform of the 24 rigid landmarks onto the PDM mean
shape times `0.7 * size / 112`, the face centre put at the image centre, bilinear warp, brow points
raised by `(30 / 0.7) * scale` px and everything outside the landmark hull set to black.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facenhance_cli.errors import MissingWeightsError, NoFaceError
from facenhance_cli.faces.detection import LandmarkDetector, default_detector, landmark_extent

# OpenFace's rigid points (FaceAnalyser extract_rigid_points): jaw sides, nose, eye corners/lids.
RIGID_POINTS = (1, 2, 3, 4, 12, 13, 14, 15, 27, 28, 29, 31, 32, 33, 34, 35, 36, 39, 40, 41, 42, 45, 46, 47)
# Points OpenFace raises so the mask covers the forehead: jaw ends and both brows.
BROW_POINTS = (0, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26)
OPENFACE_SIM_SCALE = 0.7  # OpenFace default `sim_scale` at `sim_size` = 112 px
OPENFACE_SIM_SIZE = 112
BROW_RAISE_MM = 30.0 / 0.7  # OpenFace raises the brows by (30 / 0.7) * sim_scale px

# CMU OpenFace (Apache-2.0, Copyright 2015-2016 Carnegie Mellon University, openface/align_dlib.py
# TEMPLATE): dlib's 68-point mean face normalised to about [0, 1]. Used only when the OpenFace 2.x PDM
# file is absent (it is research-only and not shipped): we map it into the PDM's millimetre frame with
# the least-squares scale and offset fitted once against the PDM mean shape (below). The fallback
# template differs from the PDM mean by 4.1 mm RMS over all 68 points (4.9 mm on the rigid points,
# about 7% of the 65.7 mm eye distance), so faces come out slightly differently placed and scaled than
# OpenFace's; meta.json records which template ran.
_CMU_TEMPLATE = np.array([
    (0.0792396913815, 0.339223741112), (0.0829219487236, 0.456955367943),
    (0.0967927109165, 0.575648016728), (0.122141515615, 0.691921601066),
    (0.168687863544, 0.800341263616), (0.239789390707, 0.895732504778),
    (0.325662452515, 0.977068762493), (0.422318282013, 1.04329000149),
    (0.531777802068, 1.06080371126), (0.641296298053, 1.03981924107),
    (0.738105872266, 0.972268833998), (0.824444363295, 0.889624082279),
    (0.894792677532, 0.792494155836), (0.939395486253, 0.681546643421),
    (0.96111933829, 0.562238253072), (0.970579841181, 0.441758925744),
    (0.971193274221, 0.322118743967), (0.163846223133, 0.249151738053),
    (0.21780354657, 0.204255863861), (0.291299351124, 0.192367318323),
    (0.367460241458, 0.203582210627), (0.4392945113, 0.233135599851),
    (0.586445962425, 0.228141644834), (0.660152671635, 0.195923841854),
    (0.737466449096, 0.182360984545), (0.813236546239, 0.192828009114),
    (0.8707571886, 0.235293377042), (0.51534533827, 0.31863546193),
    (0.516221448289, 0.396200446263), (0.517118861835, 0.473797687758),
    (0.51816430343, 0.553157797772), (0.433701156035, 0.604054457668),
    (0.475501237769, 0.62076344024), (0.520712933176, 0.634268222208),
    (0.565874114041, 0.618796581487), (0.607054002672, 0.60157671656),
    (0.252418718401, 0.331052263829), (0.298663015648, 0.302646354002),
    (0.355749724218, 0.303020650651), (0.403718978315, 0.33867711083),
    (0.352507175597, 0.349987615384), (0.296791759886, 0.350478978225),
    (0.631326076346, 0.334136672344), (0.679073381078, 0.29645404267),
    (0.73597236153, 0.294721285802), (0.782865376271, 0.321305281656),
    (0.740312274764, 0.341849376713), (0.68499850091, 0.343734332172),
    (0.353167761422, 0.746189164237), (0.414587777921, 0.719053835073),
    (0.477677654595, 0.706835892494), (0.522732900812, 0.717092275768),
    (0.569832064287, 0.705414478982), (0.635195811927, 0.71565572516),
    (0.69951672331, 0.739419187253), (0.639447159575, 0.805236879972),
    (0.576410514055, 0.835436670169), (0.525398405766, 0.841706377792),
    (0.47641545769, 0.837505914975), (0.41379548902, 0.810045601727),
    (0.380084785646, 0.749979603086), (0.477955996282, 0.74513234612),
    (0.523389793327, 0.748924302636), (0.571057789237, 0.74332894691),
    (0.672409137852, 0.744177032192), (0.572539621444, 0.776609286626),
    (0.5240106503, 0.783370783245), (0.477561227414, 0.778476346951),
])  # fmt: skip
_CMU_TO_PDM_SCALE = 161.5703  # mm per template unit (least squares against the PDM mean shape)

# The high crop: a square of side `crop_scale` x the landmark extent (max of width, height), centred on
# the landmark box moved up by this fraction of the extent, because the 68 points stop at the brows
# and the head reaches well above them.
HIGH_CENTRE_UP = 0.12
DEFAULT_CROP_SCALE = 1.8


# ----------------------------------------------------------------------------------------------------------
# Template


@dataclass(frozen=True)
class AlignmentTemplate:
    """The 2-D alignment template (68, 2) in millimetres, centroid at 0, +y down, and where it came from."""

    points: np.ndarray
    source: str  # "openface-pdm:<path>" or "cmu-openface-fallback"


def load_pdm_mean_shape(path: str | os.PathLike[str]) -> np.ndarray:
    """OpenFace 2.x PDM file -> its 2-D mean shape (68, 2) in mm: X = values[0:68], Y = values[68:136]."""
    lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    # First block: "# comment", rows, cols, type, then `rows` lines of `cols` numbers.
    if not lines or not lines[0].startswith("#"):
        raise MissingWeightsError(f"not an OpenFace PDM file: {path}")
    rows, cols = int(lines[1]), int(lines[2])
    values = np.array([float(v) for ln in lines[4 : 4 + rows] for v in ln.split()], dtype=np.float64)
    if rows * cols != 204 or values.size != 204:
        raise MissingWeightsError(f"unexpected PDM mean shape size {rows}x{cols} in {path} (expected 204x1)")
    return np.stack([values[0:68], values[68:136]], axis=1)


def fallback_template_points() -> np.ndarray:
    """The CMU OpenFace 68-point mean face in the PDM's mm frame (68, 2), centroid 0 (no-PDM fallback)."""
    pts = _CMU_TEMPLATE * _CMU_TO_PDM_SCALE
    return pts - pts.mean(axis=0)


_TEMPLATE_CACHE: dict[str, AlignmentTemplate] = {}


def alignment_template(weights_dir: str | os.PathLike[str] | None = None) -> AlignmentTemplate:
    """The OpenFace PDM mean shape when the file is found (flag > env > platformdirs), else the fallback."""
    from facenhance_cli.weights import find_weight

    key = str(weights_dir or "") + "|" + os.environ.get("FACENHANCE_WEIGHTS", "")
    if key in _TEMPLATE_CACHE:
        return _TEMPLATE_CACHE[key]
    try:
        path = find_weight("openface_pdm", weights_dir)
        points = load_pdm_mean_shape(path)
        template = AlignmentTemplate(points - points.mean(axis=0), f"openface-pdm:{path}")
    except MissingWeightsError:
        template = AlignmentTemplate(fallback_template_points(), "cmu-openface-fallback")
    _TEMPLATE_CACHE[key] = template
    return template


def sim_scale_for(size: int) -> float:
    """OpenFace's template scale (px per mm) at an output size: 0.7 at 112 px, 0.4 at 64 px."""
    return OPENFACE_SIM_SCALE * size / OPENFACE_SIM_SIZE


# ----------------------------------------------------------------------------------------------------------
# Geometry


def similarity_scale_rotation(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 2) scale*rotation A minimising |A (src - mean) - (dst - mean)|, as OpenFace AlignShapesWithScale.

    OpenFace takes the scale as the ratio of RMS spreads and the rotation from Kabsch on the normalised
    shapes (not Umeyama's least-squares scale); we follow it. src, dst: (K, 2).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    a = src - src.mean(axis=0)
    b = dst - dst.mean(axis=0)
    s_src = math.sqrt((a**2).sum() / len(a))
    s_dst = math.sqrt((b**2).sum() / len(b))
    a /= s_src
    b /= s_dst
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0  # no reflections
    rotation = vt.T @ np.diag([1.0, d]) @ u.T
    return (s_dst / s_src) * rotation


def openface_align_matrix(landmarks: np.ndarray, template: AlignmentTemplate, size: int) -> np.ndarray:
    """(2, 3) affine taking frame pixels to the `size` x `size` aligned face (OpenFace AlignFaceMask).

    Rigid points fit onto `sim_scale_for(size) * template`; the landmarks' centroid (OpenFace uses the
    PDM translation, which is the projected centroid of the same 68 points) lands at (size/2, size/2).
    """
    dst = template.points * sim_scale_for(size)
    idx = list(RIGID_POINTS)
    a = similarity_scale_rotation(landmarks[idx], dst[idx])
    centre = np.asarray(landmarks, np.float64).mean(axis=0)
    t = np.array([size / 2.0, size / 2.0]) - a @ centre
    return np.concatenate([a, t[:, None]], axis=1)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Transform (..., 2) points by a (2, 3) affine."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def as_3x3(matrix: np.ndarray) -> np.ndarray:
    """A (2, 3) affine as its (3, 3) homogeneous matrix, float64 (to compose affines by @)."""
    return np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])


def face_mask(aligned_landmarks: np.ndarray, size: int, brow_raise_px: float) -> np.ndarray:
    """(size, size) bool mask: the hull of the aligned landmarks with the brow points raised (OpenFace PAW).

    OpenFace masks with its triangulation of the 68 points; the union of those triangles is the convex
    hull of the points, which we fill directly (sub-pixel, 1/16 px).
    """
    import cv2

    pts = np.array(aligned_landmarks, np.float64, copy=True)
    pts[list(BROW_POINTS), 1] -= brow_raise_px
    hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def warp_antialiased(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Bilinear warp to (size, size), supersampled then area-averaged when it shrinks the image >= 2x.

    OpenFace warps bilinearly at once, which aliases when a 1080p face becomes 64 px; rendering at k x
    the size and averaging k x k blocks keeps the same geometry (pixel centres map exactly) without it.
    """
    import cv2

    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    k = int(min(4, max(1, math.floor(1.0 / max(scale, 1e-6)))))
    if k == 1:
        return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    big = matrix * k
    big[:, 2] += (k - 1) / 2.0
    warped = cv2.warpAffine(image, big, (size * k, size * k), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    return cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class AlignedFace:
    """One low frame: the masked face (size, size, 3) uint8, its (2, 3) transform and aligned landmarks."""

    image: np.ndarray
    matrix: np.ndarray
    landmarks: np.ndarray
    mask: np.ndarray


def align_face(
    image: np.ndarray, landmarks: np.ndarray, template: AlignmentTemplate, size: int = 64
) -> AlignedFace:
    """OpenFace-style masked similarity alignment: uint8 RGB frame + (68, 2) landmarks -> face on black."""
    return align_face_by(image, landmarks, openface_align_matrix(landmarks, template, size), size)


def align_face_by(
    image: np.ndarray, landmarks: np.ndarray, matrix: np.ndarray, size: int = 64
) -> AlignedFace:
    """A frame warped by a given (2, 3) frame -> face transform, masked around its own (68, 2) landmarks."""
    warped = warp_antialiased(image, matrix, size)
    aligned = apply_affine(matrix, np.asarray(landmarks, np.float64))
    mask = face_mask(aligned, size, BROW_RAISE_MM * sim_scale_for(size))
    warped[~mask] = 0
    return AlignedFace(warped, matrix, aligned, mask)


# ----------------------------------------------------------------------------------------------------------
# High crop


@dataclass(frozen=True)
class CropBox:
    """A square crop in source pixels: top-left (x, y) and side, integers; may reach outside the frame."""

    x: int
    y: int
    side: int

    def as_list(self) -> list[int]:
        """[x, y, side] for JSON."""
        return [self.x, self.y, self.side]


def _face_centre(landmarks: np.ndarray) -> np.ndarray:
    lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
    centre = (lo + hi) / 2.0
    centre[1] -= HIGH_CENTRE_UP * max(hi - lo)
    return centre


def steady_crop_box(
    landmarks: np.ndarray, frame_hw: tuple[int, int], crop_scale: float = DEFAULT_CROP_SCALE
) -> CropBox:
    """One square box for a whole clip from (F, 68, 2) landmarks (no jitter by construction).

    Centre and size are medians over frames; the box then grows until every frame's landmarks sit
    inside with a 5% margin, shrinks towards the frame size when it can without cutting the face, and
    slides inside the frame where it fits (the rest is padded by edge replication at crop time).
    """
    lms = np.asarray(landmarks, np.float64).reshape(-1, 68, 2)
    centres = np.stack([_face_centre(lm) for lm in lms])
    sizes = np.array([landmark_extent(lm) for lm in lms])
    centre = np.median(centres, axis=0)
    face = float(np.median(sizes))
    need = float(np.abs(lms.reshape(-1, 2) - centre).max()) + 0.05 * face  # half side covering every frame
    side = max(crop_scale * face, 2.0 * need)
    h, w = frame_hw
    if side > min(h, w):
        side = max(float(min(h, w)), 2.0 * need)
    side_i = max(2, int(round(side)))
    x = int(round(centre[0] - side_i / 2.0))
    y = int(round(centre[1] - side_i / 2.0))
    # Slide towards the inside of the frame, but never so far that a landmark would leave the box.
    lo_pts = lms.reshape(-1, 2).min(axis=0) - 0.05 * face
    hi_pts = lms.reshape(-1, 2).max(axis=0) + 0.05 * face
    x = _slide(x, side_i, w, lo_pts[0], hi_pts[0])
    y = _slide(y, side_i, h, lo_pts[1], hi_pts[1])
    return CropBox(x, y, side_i)


def _slide(start: int, side: int, limit: int, face_lo: float, face_hi: float) -> int:
    """Move [start, start+side) into [0, limit) as far as keeping [face_lo, face_hi] inside allows."""
    keep_lo = int(math.ceil(face_hi - side))  # smallest start that keeps the face's far edge inside
    keep_hi = int(math.floor(face_lo))  # largest start that keeps the face's near edge inside
    frame_lo, frame_hi = 0, limit - side
    lo, hi = max(keep_lo, frame_lo), min(keep_hi, frame_hi)
    if lo <= hi:
        return min(max(start, lo), hi)
    return min(max(start, keep_lo), keep_hi) if keep_lo <= keep_hi else start


def crop_resize(image: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """Cut `box` from a uint8 RGB frame (edges replicated outside it), resize to (size, size) antialiased."""
    import cv2

    h, w = image.shape[:2]
    x0, y0, x1, y1 = box.x, box.y, box.x + box.side, box.y + box.side
    pad = (max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w))
    patch = image[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
    if any(pad):
        patch = cv2.copyMakeBorder(patch, *pad, borderType=cv2.BORDER_REPLICATE)
    interp = cv2.INTER_AREA if box.side >= size else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=interp)


def crop_matrix(box: CropBox, size: int) -> np.ndarray:
    """(2, 3) affine taking source pixels to pixels of the resized crop (what `box_to_crop` applies)."""
    s = size / box.side  # pixel centres: source x maps to (x - box.x + 0.5) * s - 0.5
    return np.array([[s, 0.0, (0.5 - box.x) * s - 0.5], [0.0, s, (0.5 - box.y) * s - 0.5]])


def box_to_crop(points: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """Source-pixel points (..., 2) -> pixel coordinates in the resized crop."""
    return apply_affine(crop_matrix(box, size), np.asarray(points, np.float64))


# ----------------------------------------------------------------------------------------------------------
# Identity image


def align_identity(
    image: np.ndarray,
    size: int = 192,
    crop_scale: float = DEFAULT_CROP_SCALE,
    detector: LandmarkDetector | None = None,
    min_face: float = 0.0,
) -> np.ndarray:
    """A photo (H, W, 3) uint8 RGB -> (size, size, 3) uint8 identity image, cropped like high frames.

    The largest face is kept; NoFaceError when there is none (or it is smaller than `min_face` px).
    """
    det = detector or default_detector()
    image = np.ascontiguousarray(image[..., :3]) if image.ndim == 3 else np.repeat(image[..., None], 3, 2)
    landmarks = det.detect_landmarks(image)
    if landmarks is None:
        raise NoFaceError("no face found in the identity image")
    extent = landmark_extent(landmarks)
    if extent < min_face:
        raise NoFaceError(
            f"the face in the identity image is too small ({extent:.0f} px < {min_face:.0f} px)"
        )
    box = steady_crop_box(landmarks[None], image.shape[:2], crop_scale)
    return crop_resize(image, box, size)
