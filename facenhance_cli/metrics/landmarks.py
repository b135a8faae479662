"""Expression error (ours; the paper lacks it): 68-landmark distance normalised by the inter-ocular distance.

NME as in the 300-W benchmark (Sagonas et al. 2016): mean point-to-point distance divided by the
distance between the outer eye corners (points 36 and 45 in the iBUG 68-point order) of the ground truth.
"""

from __future__ import annotations

import numpy as np

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
