"""Video quality metrics: fidelity (PSNR, SSIM), FVD (I3D features), face identity (dlib) and landmark error.

Each module takes uint8 RGB frames (F, H, W, 3) at its edge and computes in float64 (or float32 for
networks). `facenhance_cli.evaluation` pairs videos and runs them; nothing here reads files except
the weight loaders.
"""

from facenhance_cli.metrics.fidelity import psnr_frames, ssim_frames
from facenhance_cli.metrics.fvd import frechet_distance, fvd_from_features

__all__ = ["frechet_distance", "fvd_from_features", "psnr_frames", "ssim_frames"]
