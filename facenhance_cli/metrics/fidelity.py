"""PSNR and SSIM per frame on RGB in [0, 255] (the paper's Sec. 5.3 fidelity metrics)."""

from __future__ import annotations

import numpy as np

DATA_RANGE = 255.0
SSIM_SIGMA = 1.5  # Wang et al. 2004, Sec. III-C: 11x11 circular-symmetric Gaussian, sigma 1.5
SSIM_RADIUS = 5  # window 11 = 2 * 5 + 1; scikit-image's truncate=3.5 at sigma 1.5 gives the same radius
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"frame shapes differ: {a.shape} vs {b.shape}")
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"expected (F, H, W, 3) RGB frames, got {a.shape}")


def psnr_frames(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """PSNR in dB per frame of two (F, H, W, 3) uint8 videos -> (F,) float64; inf for identical frames.
    `valid` (F, H, W) bool: only those pixels count (head-aligned truth leaves some unknown)."""
    _check_pair(a, b)
    squared = (a.astype(np.float64) - b.astype(np.float64)) ** 2  # (F, H, W, 3)
    if valid is None:
        mse = squared.reshape(len(a), -1).mean(axis=1)
    else:
        weight = valid[..., None].astype(np.float64)
        mse = (squared * weight).sum(axis=(1, 2, 3)) / np.maximum(weight.sum(axis=(1, 2, 3)) * 3, 1.0)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(DATA_RANGE**2 / mse)


def gaussian_window(radius: int = SSIM_RADIUS, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of length 2 * radius + 1 (float64, sums to 1)."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def ssim_frames(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """SSIM per frame of two (F, H, W, 3) uint8 videos -> (F,) float64 in [-1, 1]; with `valid` (F, H, W)
    bool, the map is averaged over the windows whose centre pixel is valid.

    Wang et al. 2004 (Eq. 13): local statistics under an 11x11 Gaussian (sigma 1.5), population
    (biased) variances, C1 = (K1 L)^2, C2 = (K2 L)^2 with L = 255; the SSIM map is averaged over the
    'valid' region only (no border padding), per channel, and the three channels are averaged. This
    is what scikit-image computes with gaussian_weights=True, use_sample_covariance=False.
    """
    import cv2

    _check_pair(a, b)
    w = gaussian_window()
    r = SSIM_RADIUS

    def blur(x: np.ndarray) -> np.ndarray:
        # Separable Gaussian on all three channels at once; the border mode does not matter because
        # the r-pixel border (where the window leaves the image) is cropped away.
        return cv2.sepFilter2D(x, cv2.CV_64F, w, w, borderType=cv2.BORDER_REFLECT)[r:-r, r:-r]

    c1 = (SSIM_K1 * DATA_RANGE) ** 2
    c2 = (SSIM_K2 * DATA_RANGE) ** 2
    out = np.empty(len(a), dtype=np.float64)
    for i, (fa, fb) in enumerate(zip(a, b, strict=True)):
        # float64 because mu^2 and E[x^2] are ~65025 and cancel badly in float32.
        x, y = fa.astype(np.float64), fb.astype(np.float64)
        mu_x, mu_y = blur(x), blur(y)
        var_x = blur(x * x) - mu_x**2
        var_y = blur(y * y) - mu_y**2
        cov = blur(x * y) - mu_x * mu_y
        ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
            (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
        )
        if valid is None:
            out[i] = ssim_map.mean(axis=(0, 1)).mean()
        else:
            centres = valid[i][r:-r, r:-r]
            out[i] = ssim_map[centres].mean() if centres.any() else np.nan
    return out
