"""Frechet Video Distance (Unterthiner et al. 2018, "Towards Accurate Generative Models of Video")."""

from __future__ import annotations

import numpy as np

FVD_MIN_VIDEOS = 10  # below this the 400-d covariance has rank < 10: the number is dominated by bias


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) in float64 of (N, D) features (N >= 2)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need (N >= 2, D) features, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((s + s.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Frechet distance of two Gaussians: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), float64, >= 0.

    tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric PSD
    matrix S1^(1/2) S2 S1^(1/2) (same spectrum as S1 S2). Unlike scipy.linalg.sqrtm on S1 S2, this
    stays real and exact for the rank-deficient covariances that a few hundred videos give.
    """
    r1 = _psd_sqrt(s1)
    inner = r1 @ s2 @ r1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(value, 0.0)


def fvd_from_features(gen: np.ndarray, real: np.ndarray) -> float:
    """FVD between (N1, 400) and (N2, 400) I3D logit sets (N >= 2 each)."""
    return frechet_distance(*gaussian_stats(gen), *gaussian_stats(real))
