"""Each metric against an independent computation (scikit-image, scipy, numpy float64) or a known value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import require_weight_file

from facenhance_cli.metrics.fidelity import gaussian_window, psnr_frames, ssim_frames
from facenhance_cli.metrics.fvd import frechet_distance, fvd_from_features, gaussian_stats
from facenhance_cli.metrics.identity import acd, acd_i, id_match
from facenhance_cli.metrics.landmarks import expression_nme, fit_similarity, landmark_nme

CLIPS = {  # three people, expressive clips
    "b01": "b01_dreamtalk-mead_M030_front_happy_level3_001.mp4",
    "b02": "b02_dreamtalk-mead_W009_front_angry_level3_001.mp4",
    "b03": "b03_dreamtalk-mead_W011_front_surprised_level3_001.mp4",
}


def load_clip(faces_dir: Path, person: str, n_frames: int = 8, size: int = 192, start: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 frames of a shared real clip, resized (the clips are 256x256 face crops)."""
    import cv2

    from facenhance_cli.video import read_video

    frames, _ = read_video(faces_dir / "clips" / CLIPS[person], max_frames=start + n_frames)
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames[start:]])


def noisy(frames: np.ndarray, amplitude: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(
        frames.astype(np.int16) + rng.integers(-amplitude, amplitude + 1, frames.shape), 0, 255
    ).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- PSNR / SSIM


def test_psnr_known_value_and_inf() -> None:
    a = np.full((2, 16, 16, 3), 100, np.uint8)
    b = a.copy()
    b[0] += 5  # MSE 25 -> 10 log10(255^2 / 25)
    values = psnr_frames(a, b)
    assert values[0] == pytest.approx(10 * np.log10(255**2 / 25), abs=1e-12)
    assert values[1] == np.inf


def test_psnr_matches_skimage_on_random_frames() -> None:
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (3, 40, 48, 3), dtype=np.uint8)
    b = noisy(a, 30)
    ref = [peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(psnr_frames(a, b), ref, atol=1e-9)


def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from skimage.metrics import structural_similarity

    return np.array(
        [
            structural_similarity(
                x,
                y,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=255,
                channel_axis=-1,
            )
            for x, y in zip(a, b, strict=True)
        ]
    )


def test_ssim_window_is_wang_2004() -> None:
    w = gaussian_window()
    assert len(w) == 11 and w.sum() == pytest.approx(1.0) and w.argmax() == 5


def test_ssim_matches_skimage_on_random_frames() -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (4, 37, 53, 3), dtype=np.uint8)
    b = noisy(a, 60, seed=3)
    np.testing.assert_allclose(ssim_frames(a, b), _skimage_ssim(a, b), atol=1e-3)
    np.testing.assert_allclose(ssim_frames(a, a), 1.0, atol=1e-12)


def test_ssim_and_psnr_match_skimage_on_real_frames(faces_dir: Path) -> None:
    from skimage.metrics import peak_signal_noise_ratio

    clip = load_clip(faces_dir, "b01", n_frames=12)
    a, b = clip[:6], clip[6:]  # different frames of one talking face: realistic, partly similar content
    got = ssim_frames(a, b)
    np.testing.assert_allclose(got, _skimage_ssim(a, b), atol=1e-3)
    assert 0.3 < got.mean() < 0.99
    ref = [peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(psnr_frames(a, b), ref, atol=1e-9)


def test_fidelity_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_frames(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 9, 3), np.uint8))


# ---------------------------------------------------------------------------------------------- Frechet / FVD


def test_frechet_distance_of_diagonal_gaussians_is_closed_form() -> None:
    # For commuting (diagonal) covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1 + 4 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, abs=1e-10)


def test_frechet_distance_matches_scipy_sqrtm_formula() -> None:
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 12)) @ rng.normal(size=(12, 12))
    y = rng.normal(size=(150, 12)) * 2 + 1
    mu1, s1 = gaussian_stats(x)
    mu2, s2 = gaussian_stats(y)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)


def test_fvd_self_is_zero_and_symmetric_even_when_rank_deficient() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(12, 400)), rng.normal(size=(15, 400)) + 0.3  # N << 400, like a real test set
    assert fvd_from_features(a, a) == pytest.approx(0.0, abs=1e-6)
    assert fvd_from_features(a, b) == pytest.approx(fvd_from_features(b, a), rel=1e-6)
    assert fvd_from_features(a, b) > 1.0


# ---------------------------------------------------------------------------------------------- I3D


@pytest.fixture(scope="module")
def i3d():
    from facenhance_cli.metrics.i3d import load_i3d

    path = require_weight_file("i3d")
    return load_i3d(path), path


@pytest.fixture(scope="module")
def real_logits(i3d, faces_dir):
    """I3D logits of three real 16-frame clips (one batch): the expensive part, computed once."""
    from facenhance_cli.metrics.i3d import i3d_logits

    clips = [load_clip(faces_dir, p, n_frames=16, size=192) for p in ("b01", "b02", "b03")]
    return clips, i3d_logits(i3d[0], clips, batch_size=3)


def test_i3d_same_padding_is_tf_same() -> None:
    import torch

    from facenhance_cli.metrics.i3d import _same_pad

    x = torch.zeros(1, 1, 16, 224, 224)
    # TF SAME, n=224, k=7, s=2: out 112, pad (112-1)*2+7-224 = 5 -> 2 before, 3 after.
    assert _same_pad(x, (7, 7, 7), (2, 2, 2)).shape == (1, 1, 16 + 5, 229, 229)
    # n=16, k=7, s=2: out 8, pad (8-1)*2+7-16 = 5; k=3 s=1 pads 2; k=2 s=2 on an even size pads 0.
    assert _same_pad(x[:, :, :, :8, :8], (3, 3, 3), (1, 1, 1)).shape == (1, 1, 18, 10, 10)
    assert _same_pad(x[:, :, :, :8, :8], (2, 2, 2), (2, 2, 2)).shape == (1, 1, 16, 8, 8)


def test_i3d_loads_strictly_and_shapes(i3d) -> None:
    import torch

    net, _ = i3d
    assert sum(p.numel() for p in net.parameters()) > 12_000_000
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d))


def test_i3d_top_class_on_real_face_clips_is_sensible(i3d, real_logits) -> None:
    from facenhance_cli.metrics.i3d import load_labels

    labels = load_labels(i3d[1])
    assert len(labels) == 400
    _, logits = real_logits
    assert logits.shape == (3, 400) and np.isfinite(logits).all()
    # Close-up talking / emoting faces: Kinetics has no "talking head", the network picks classes with
    # a face and a busy mouth (measured: playing trumpet, singing, smoking, ...), never sports or scenery.
    face_classes = set(
        (
            "playing trumpet|playing saxophone|playing recorder|playing harmonica|playing clarinet|singing|"
            "smoking|laughing|crying|yawning|whistling|beatboxing|sneezing|news anchoring|eating burger|"
            "eating spaghetti|tasting food|drinking|blowing nose|applying cream|shaving head|shaving legs|"
            "massaging person's head|brushing teeth|smoking hookah|playing bagpipes|playing flute|"
            "eating ice cream|tasting beer|answering questions|giving or receiving award|testifying|"
            "finger snapping|celebrating|garbage collecting|ripping paper|tossing coin|dying hair|"
            "braiding hair|playing didgeridoo|blowing out candles|drinking beer|eating doughnuts|"
            "fixing hair|getting a haircut|headbanging|making a cake|filling eyebrows|shaking head"
        ).split("|")
    )
    for row in logits:
        top5 = [labels[i] for i in np.argsort(-row)[:5]]
        print("I3D top-5:", top5)
        assert labels[int(row.argmax())] in face_classes, top5


def test_i3d_features_are_deterministic_and_batch_independent(i3d, real_logits) -> None:
    from facenhance_cli.metrics.i3d import i3d_logits

    clips, logits = real_logits
    again = i3d_logits(i3d[0], clips[:1], batch_size=1)
    np.testing.assert_allclose(again[0], logits[0], atol=1e-4)
    # FVD of a real set against itself is ~0 (a 3-video set: only a property check, not a score).
    assert fvd_from_features(logits, logits) == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------- identity


def test_acd_and_identity_distances_known_values() -> None:
    emb = np.zeros((3, 128))
    emb[1, 0], emb[2, 0] = 0.3, 0.3 + 0.4  # steps 0.3 and 0.4
    assert acd(emb) == pytest.approx(0.35)
    assert acd(np.repeat(emb[:1], 5, axis=0)) == 0.0
    ref = np.zeros(128)
    assert acd_i(emb, ref) == pytest.approx((0 + 0.3 + 0.7) / 3)
    assert id_match(emb, ref) == pytest.approx(2 / 3)  # 0.7 is over the 0.6 threshold


@pytest.fixture(scope="module")
def dlib_faces():
    from facenhance_cli.metrics.identity import DlibFaces

    get = require_weight_file
    return DlibFaces(get("dlib_embedding"), get("dlib_landmarks5"), get("dlib_landmarks68"))


def test_embedding_acd_of_static_video_is_zero(dlib_faces, faces_dir) -> None:
    frame = load_clip(faces_dir, "b02", n_frames=1)[0]
    emb, missing = dlib_faces.embeddings(np.repeat(frame[None], 4, axis=0))
    assert missing == 0 and emb.shape == (4, 128)
    assert acd(emb) == 0.0


@pytest.mark.parametrize("person", ["b01", "b02", "b03"])
def test_id_match_of_ground_truth_against_its_own_identity_frame_is_one(
    dlib_faces, faces_dir, person
) -> None:
    clip = load_clip(faces_dir, person, n_frames=8, start=4)
    emb, missing = dlib_faces.embeddings(clip)
    identity, _ = dlib_faces.embeddings(clip[:1])
    assert missing == 0
    assert id_match(emb, identity[0]) == 1.0
    assert 0.0 < acd(emb) < 0.3  # a talking face moves a little in embedding space


def test_identity_metrics_tell_people_apart(dlib_faces, faces_dir) -> None:
    import cv2

    from facenhance_cli.video import read_image

    clip = load_clip(faces_dir, "b01", n_frames=8)
    emb, _ = dlib_faces.embeddings(clip)

    def neutral(person: str) -> np.ndarray:
        image = read_image(faces_dir / "neutral" / f"{person}_neutral.png")
        vec, _ = dlib_faces.embeddings(cv2.resize(image, (192, 192), interpolation=cv2.INTER_AREA)[None])
        return vec[0]

    same, other = neutral("b01"), neutral("b02")
    print("acd_i same person", acd_i(emb, same), "other person", acd_i(emb, other))
    assert id_match(emb, same) >= 0.75 and acd_i(emb, same) < 0.5
    assert id_match(emb, other) == 0.0 and acd_i(emb, other) > 0.6


def test_no_face_falls_back_to_whole_frame_and_is_counted(dlib_faces) -> None:
    blank = np.zeros((2, 192, 192, 3), np.uint8)
    emb, missing = dlib_faces.embeddings(blank)
    assert missing == 2 and np.isfinite(emb).all()


# ---------------------------------------------------------------------------------------------- landmarks


def test_landmark_nme_known_offset() -> None:
    rng = np.random.default_rng(6)
    gt = rng.uniform(50, 150, (3, 68, 2))
    gt[:, 36], gt[:, 45] = [60.0, 80.0], [140.0, 80.0]  # inter-ocular distance 80
    pred = gt + np.array([3.0, 4.0])  # every point 5 px off
    pred[:, 48:68] += np.array([6.0, 8.0])  # mouth points 15 px off
    nme = landmark_nme(pred, gt)
    np.testing.assert_allclose(nme["eyes"], 5 / 80)
    np.testing.assert_allclose(nme["mouth"], 15 / 80)
    np.testing.assert_allclose(nme["all"], (48 * 5 + 20 * 15) / 68 / 80)
    np.testing.assert_allclose(landmark_nme(gt, gt)["all"], 0.0)


def test_expression_nme_ignores_head_pose_and_sees_the_mouth() -> None:
    rng = np.random.default_rng(7)
    gt = rng.uniform(50, 150, (2, 68, 2))
    gt[:, 36], gt[:, 45] = [60.0, 80.0], [140.0, 80.0]
    angle = np.radians(12.0)
    pose = 1.3 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = gt @ pose.T + np.array([17.0, -9.0])  # the same face, another head pose
    np.testing.assert_allclose(fit_similarity(moved[0], gt[0]) @ np.append(moved[0, 5], 1.0), gt[0, 5])
    assert landmark_nme(moved, gt)["all"].min() > 0.2
    np.testing.assert_allclose(expression_nme(moved, gt), 0.0, atol=1e-9)
    opened = moved.copy()
    opened[:, 57] += np.array([0.0, 13.0]) @ pose.T  # the lower lip 13 px lower (80 px between the eyes)
    np.testing.assert_allclose(expression_nme(opened, gt), 13 / 68 / 80, rtol=1e-6)


def test_dlib_landmarks_follow_a_known_shift(dlib_faces, faces_dir) -> None:
    import cv2

    clip = load_clip(faces_dir, "b01", n_frames=4)
    shift = np.array([6.0, -4.0])
    m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    moved = np.stack([cv2.warpAffine(f, m, (192, 192), borderMode=cv2.BORDER_REPLICATE) for f in clip])
    a, missing_a = dlib_faces.landmarks68(clip)
    b, missing_b = dlib_faces.landmarks68(moved)
    assert missing_a == missing_b == 0 and a.shape == (4, 68, 2)
    np.testing.assert_allclose((b - a).reshape(-1, 2).mean(axis=0), shift, atol=1.0)
    iod = np.linalg.norm(a[:, 36] - a[:, 45], axis=1)
    expected = np.linalg.norm(shift) / iod
    np.testing.assert_allclose(landmark_nme(b, a)["all"], expected, rtol=0.25)


def test_face_sharpness_ratio_is_one_for_the_truth_and_lower_when_blurred():
    """Laplacian energy inside the truth's landmark hull: the truth scores 1, a blurred copy less, and
    detail outside the hull does not count."""
    import cv2

    from facenhance_cli.metrics.sharpness import sharpness_ratio

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    hull = np.stack([32 + 12 * np.cos(angles), 32 + 12 * np.sin(angles)], axis=1)  # a circle r = 12
    landmarks = np.stack([hull, hull])
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in truth])
    assert sharpness_ratio(truth, truth, landmarks) == pytest.approx(1.0)
    assert sharpness_ratio(blurred, truth, landmarks) < 0.5
    outside_only = blurred.copy()
    outside_only[:, :8] = truth[:, :8]  # sharp rows far from the face region
    assert sharpness_ratio(outside_only, truth, landmarks) == pytest.approx(
        sharpness_ratio(blurred, truth, landmarks)
    )
