"""Face geometry (synthetic, exact) and the real detector + alignment on shared photos and clips."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import require_weight_file

from facenhance_cli import faces
from facenhance_cli.errors import NoFaceError


def _template() -> faces.AlignmentTemplate:
    return faces.AlignmentTemplate(faces.fallback_template_points(), "test")


def _similar(points: np.ndarray, scale: float, angle: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return scale * points @ rot.T + np.array(shift)


# ------------------------------------------------------------------------------------------------ template


def test_pdm_template_loads(require_weight):
    path = require_weight("openface_pdm")
    pts = faces.load_pdm_mean_shape(path)
    assert pts.shape == (68, 2)
    assert abs(pts.mean(axis=0)).max() < 1e-6  # the PDM mean shape is centred
    # Mirror-symmetric outer eye corners (36/45) and +y down (chin below the nose).
    assert pts[36, 0] < 0 < pts[45, 0] and abs(pts[36, 1] - pts[45, 1]) < 1.0
    assert pts[8, 1] > pts[30, 1] > pts[27, 1]
    template = faces.alignment_template()
    assert template.source.startswith("openface-pdm")


def test_fallback_template_close_to_pdm(require_weight):
    pdm = faces.load_pdm_mean_shape(require_weight("openface_pdm"))
    fallback = faces.fallback_template_points()
    rms = np.sqrt(((fallback - (pdm - pdm.mean(0))) ** 2).sum(1).mean())
    assert rms < 5.0  # mm; documented as 4.1 mm


def test_template_falls_back_without_pdm(tmp_path, monkeypatch):
    monkeypatch.setenv("FACENHANCE_WEIGHTS", str(tmp_path))
    monkeypatch.setattr("facenhance_cli.weights.user_weights_dir", lambda: tmp_path / "none")
    faces.alignment._TEMPLATE_CACHE.clear()
    try:
        template = faces.alignment_template()
    finally:
        faces.alignment._TEMPLATE_CACHE.clear()
    assert template.source == "cmu-openface-fallback"
    assert template.points.shape == (68, 2)


def test_sim_scale_matches_openface():
    assert faces.sim_scale_for(112) == pytest.approx(0.7)
    assert faces.sim_scale_for(64) == pytest.approx(0.4)


# ------------------------------------------------------------------------------------------------ geometry


def test_align_matrix_recovers_similarity():
    template = _template()
    # A face = the template seen through a similarity (rotated 0.3 rad, 2.1 px/mm, shifted).
    landmarks = _similar(template.points, 2.1, 0.3, (250.0, 180.0))
    matrix = faces.openface_align_matrix(landmarks, template, 64)
    aligned = faces.apply_affine(matrix, landmarks)
    expected = template.points * 0.4 + 32.0
    np.testing.assert_allclose(aligned, expected, atol=1e-6)
    assert math.sqrt(abs(np.linalg.det(matrix[:, :2]))) == pytest.approx(0.4 / 2.1)


def test_similarity_never_reflects():
    pts = np.random.default_rng(0).normal(size=(24, 2))
    mirrored = pts * np.array([-1.0, 1.0])
    a = faces.similarity_scale_rotation(pts, mirrored)
    assert np.linalg.det(a) > 0


def test_face_mask_hull_and_brow_raise():
    template = _template()
    aligned = template.points * 0.4 + 32.0
    mask = faces.face_mask(aligned, 64, 0.0)
    raised = faces.face_mask(aligned, 64, faces.BROW_RAISE_MM * 0.4)
    assert mask[32, 32] and not mask[0, 0] and not mask[63, 63]
    assert raised.sum() > mask.sum()  # the forehead joins the mask
    assert (mask & ~raised).sum() < 0.02 * mask.sum()  # raising the jaw ends trims a sliver at the temples
    brow_y = int(aligned[19, 1])
    assert raised[brow_y - 5, 32] and not mask[brow_y - 5, 32]


def test_align_face_black_outside_mask():
    template = _template()
    landmarks = _similar(template.points, 1.5, -0.1, (200.0, 210.0))
    image = np.full((400, 400, 3), 200, np.uint8)
    out = faces.align_face(image, landmarks, template, 64)
    assert out.image.shape == (64, 64, 3) and out.image.dtype == np.uint8
    assert (out.image[~out.mask] == 0).all()
    inside = out.image[out.mask]
    assert (inside > 150).mean() > 0.95  # not black inside (edge pixels may blend with the border)


def test_warp_antialiased_keeps_geometry():
    # A smooth ramp warped with supersampling equals the plain bilinear warp (no shift, same pixel centres).
    yy, xx = np.mgrid[0:512, 0:512].astype(np.float32)
    image = np.stack([xx / 2, yy / 2, (xx + yy) / 4], -1).astype(np.uint8)
    matrix = np.array([[0.125, 0.0, 0.0], [0.0, 0.125, 0.0]])
    import cv2

    plain = cv2.warpAffine(image, matrix, (64, 64), flags=cv2.INTER_LINEAR)
    smooth = faces.warp_antialiased(image, matrix, 64)
    assert np.abs(plain.astype(int) - smooth.astype(int))[2:-2, 2:-2].max() <= 2


def test_interpolate_and_smooth():
    t = np.arange(10, dtype=float)
    lms = np.tile(t[:, None, None], (1, 68, 2))
    holes = lms.copy()
    holes[[0, 4, 5, 9]] = np.nan
    filled = faces.interpolate_missing(holes)
    np.testing.assert_allclose(filled[4:6], lms[4:6])  # linear inside
    assert filled[0, 0, 0] == 1.0 and filled[9, 0, 0] == 8.0  # ends hold the nearest found frame
    smooth = faces.gaussian_smooth(lms, 1.0)
    np.testing.assert_allclose(smooth[3:7], lms[3:7], atol=1e-9)  # a linear track is unchanged in the middle
    noisy = lms + np.random.default_rng(0).normal(0, 1, lms.shape)
    assert np.std(faces.gaussian_smooth(noisy, 1.5) - lms) < 0.7 * np.std(noisy - lms)
    with pytest.raises(NoFaceError):
        faces.interpolate_missing(np.full((3, 68, 2), np.nan))


def test_track_keeps_consistent_face():
    face = faces.FaceBox(100, 100, 200, 200)
    other = faces.FaceBox(300, 50, 500, 250)  # bigger, but only in one frame
    per_frame = [[face], [face, other], [], [faces.FaceBox(105, 102, 205, 203)]]
    chosen = faces.track_boxes(per_frame)
    assert chosen[0] == face and chosen[1] == face and chosen[2] is None
    assert chosen[3] is not None and chosen[3].x0 == 105


def test_steady_crop_contains_face_and_stays_in_frame():
    template = _template()
    rng = np.random.default_rng(1)
    lms = np.stack([_similar(template.points, 1.0, 0.0, (320 + 5 * rng.normal(), 240 + 5 * rng.normal()))
                    for _ in range(12)])  # fmt: skip
    box = faces.steady_crop_box(lms, (480, 640), 1.8)
    assert box.x >= 0 and box.y >= 0 and box.x + box.side <= 640 and box.y + box.side <= 480
    in_crop = faces.box_to_crop(lms, box, 192)
    assert in_crop.min() > 0 and in_crop.max() < 191
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    assert faces.crop_resize(image, box, 192).shape == (192, 192, 3)
    # A face near the border: the box may leave the frame; the crop is padded, not shrunk around the face.
    edge = _similar(template.points, 1.0, 0.0, (60, 240))
    box = faces.steady_crop_box(edge[None], (480, 640), 1.8)
    assert faces.box_to_crop(edge, box, 192).min() > 0
    assert faces.crop_resize(image, box, 192).shape == (192, 192, 3)


# ------------------------------------------------------------------------------------------------ real faces


@pytest.fixture(scope="module")
def detector():
    require_weight_file("dlib_landmarks68")  # fails under CI=true, like every missing third-party file
    return faces.LandmarkDetector("dlib", "auto")


def _rigid_rms(aligned: np.ndarray, template: faces.AlignmentTemplate, size: int) -> float:
    dst = template.points * faces.sim_scale_for(size) + size / 2
    idx = list(faces.RIGID_POINTS)
    return float(np.sqrt(((aligned[idx] - dst[idx]) ** 2).sum(1).mean()))


def test_real_photo_landmarks_and_alignment(detector, faces_dir, require_weight):
    from facenhance_cli.video import read_image

    require_weight("openface_pdm")
    template = faces.alignment_template()
    image = read_image(faces_dir / "photos" / "pypi-scikit_image_astronaut.png")
    lms = detector.detect_landmarks(image)
    assert lms is not None and lms.shape == (68, 2)
    h, w = image.shape[:2]
    assert (lms[:, 0] > 0).all() and (lms[:, 0] < w).all() and (lms[:, 1] > 0).all() and (lms[:, 1] < h).all()
    out = faces.align_face(image, lms, template, 64)
    # Error bound: the template's eye distance at 64 px is 65.7 mm * 0.4 = 26 px. The rigid points of a
    # real frontal face differ from the mean shape by person-specific shape, small head rotation and
    # landmark noise, each a few % of that distance (2-2.6 px measured on the shared clips); 15% (3.9 px)
    # leaves room for those yet fails on a wrong scale (>= 20% off) or a 4 px shift.
    assert _rigid_rms(out.landmarks, template, 64) < 0.15 * 65.7 * 0.4
    # Eyes level within 5 degrees after alignment.
    left, right = out.landmarks[36:42].mean(0), out.landmarks[42:48].mean(0)
    assert abs(math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))) < 5


def test_align_identity_on_photo(detector, faces_dir):
    from facenhance_cli.video import read_image

    image = read_image(faces_dir / "photos" / "face-recognition_examples_obama.jpg")
    identity = faces.align_identity(image, size=192, detector=detector)
    assert identity.shape == (192, 192, 3) and identity.dtype == np.uint8
    lms = detector.detect_landmarks(identity)
    assert lms is not None
    centre = lms.mean(0)
    assert abs(centre[0] - 96) < 20 and abs(centre[1] - 96) < 30
    extent = faces.landmark_extent(lms)
    assert 192 / 2.4 < extent < 192 / 1.3  # crop_scale 1.8 (the box may grow to fit the face)


def test_no_face_in_blank_image(detector):
    blank = np.full((200, 200, 3), 90, np.uint8)
    assert detector.detect_landmarks(blank) is None
    with pytest.raises(NoFaceError):
        faces.align_identity(blank, detector=detector)


def test_grayscale_like_input_and_small_frames(detector, faces_dir):
    import cv2

    from facenhance_cli.video import read_image

    image = read_image(faces_dir / "neutral" / "b01_neutral.png")
    gray = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    assert detector.detect_landmarks(gray) is not None
    small = cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA)  # HOG upsamples small frames
    assert detector.detect_landmarks(small) is not None
