"""Expression error (ours; the paper lacks it): 68-landmark distance normalised by the inter-ocular distance.

NME as in the 300-W benchmark (Sagonas et al. 2016): mean point-to-point distance divided by the
distance between the outer eye corners (points 36 and 45 in the iBUG 68-point order) of the ground truth.
`landmark_nme` counts head position too; `expression_nme` first removes the head's pose (a least-squares
similarity of the output's rigid points onto the ground truth's, Umeyama 1991), since an aligned 64x64
low frame carries no head position: what remains is the expression.
"""

from __future__ import annotations

import numpy as np

from facenhance_cli.faces import RIGID_POINTS

LANDMARK_NETWORK = "dlib shape_predictor_68_face_landmarks (iBUG 300-W order) on dlib HOG detections"
OUTER_EYE_CORNERS = (36, 45)
REGIONS: dict[str, slice] = {
    "all": slice(0, 68),
    "mouth": slice(48, 68),
    "eyes": slice(36, 48),
}


def landmark_nme(pred: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame NME of (F, 68, 2) predicted vs ground-truth landmarks -> {'all', 'mouth', 'eyes'}: (F,)."""
    if pred.shape != gt.shape or pred.shape[1:] != (68, 2):
        raise ValueError(f"expected two (F, 68, 2) landmark arrays, got {pred.shape} and {gt.shape}")
    iod = np.linalg.norm(gt[:, OUTER_EYE_CORNERS[0]] - gt[:, OUTER_EYE_CORNERS[1]], axis=1)
    iod = np.maximum(iod, 1e-6)  # degenerate (no face) frames must not divide by zero
    dist = np.linalg.norm(pred - gt, axis=2)  # (F, 68)
    return {name: dist[:, sl].mean(axis=1) / iod for name, sl in REGIONS.items()}


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) least-squares similarity taking (K, 2) src points onto dst (Umeyama 1991, no reflection)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    var_s = (a**2).sum() / len(a)
    u, sigma, vt = np.linalg.svd(b.T @ a / len(a))
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(sigma) @ d) / max(var_s, 1e-12))
    return np.concatenate([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]], axis=1)


def expression_nme(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame NME (F,) of (F, 68, 2) landmarks after fitting each output frame's rigid points onto the
    ground truth's: head pose removed, expression kept."""
    if pred.shape != gt.shape or pred.shape[1:] != (68, 2):
        raise ValueError(f"expected two (F, 68, 2) landmark arrays, got {pred.shape} and {gt.shape}")
    rigid = list(RIGID_POINTS)
    aligned = np.empty_like(np.asarray(pred, np.float64))
    for i, (p, g) in enumerate(zip(pred, gt, strict=True)):
        pose = fit_similarity(p[rigid], g[rigid])  # (2, 3): this frame's head pose onto the truth's
        aligned[i] = p @ pose[:, :2].T + pose[:, 2]
    return landmark_nme(aligned, gt)["all"]
