"""How far can estimators with no network go on a prepared test split? PSNR per clip beside the paste.

The ground truth's head moves (the low frames are aligned and do not say where), so no method reaches
every pixel; what the paste loses against the identity image on near-static clips is detail the identity
already has. Estimators, all from the identity image and the low video only (what `enhance` sees):
  identity     the identity image, repeated,
  paste        the low face pasted (`pasting.paste_low_face`), what the eval baseline scores,
  detail       the paste's low frequencies plus the identity's high frequencies inside the paste's
               alpha: identity + alpha * (G(paste) - G(identity)), G a Gaussian of --sigma px,
  hedge W      identity + W * (paste - identity).
PSNR as `eval` reports it: per frame, identical frames left out, mean over frames, then over clips.

    python benchmarks/trivial_estimators.py PREPARED_TEST_DIR [--sigma 1.5 2 3] [--frames 32]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from facenhance_cli.metrics.fidelity import psnr_frames
from facenhance_cli.pasting import FEATHER_SIGMA, locate_low_face, low_face_mask, paste_low_face
from facenhance_cli.video import read_video


def mean_psnr(video: np.ndarray, gt: np.ndarray) -> float:
    values = psnr_frames(video, gt)
    return float(values[np.isfinite(values)].mean())


def paste_alpha(low_frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """(S, S, 1) float32: the pasted face's feathered alpha, as `paste_low_face` blends it."""
    alpha = cv2.warpAffine(low_face_mask(low_frame), matrix, (size, size), flags=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(alpha, (0, 0), FEATHER_SIGMA)[..., None]


def detail_transfer(identity: np.ndarray, pasted: np.ndarray, alpha: np.ndarray, sigma: float) -> np.ndarray:
    """identity + alpha * (G(pasted) - G(identity)): the paste's shading with the identity's texture."""
    ident = identity.astype(np.float32)
    low_change = cv2.GaussianBlur(pasted.astype(np.float32), (0, 0), sigma) - cv2.GaussianBlur(ident, (0, 0), sigma)
    return np.clip(ident + alpha * low_change + 0.5, 0, 255).astype(np.uint8)


def clip_scores(clip: Path, sigmas: list[float], hedges: list[float], max_frames: int) -> dict[str, float]:
    gt, _ = read_video(clip / "high.mkv", max_frames)
    low, _ = read_video(clip / "low.mkv", max_frames)
    identity = cv2.cvtColor(cv2.imread(str(clip / "identity.png")), cv2.COLOR_BGR2RGB)
    matrix, _ = locate_low_face(identity, low[0])
    size = identity.shape[0]
    pasted = np.stack([paste_low_face(identity, f, matrix) for f in low])
    alphas = [paste_alpha(f, matrix, size) for f in low]
    scores = {"identity": mean_psnr(np.repeat(identity[None], len(gt), 0), gt), "paste": mean_psnr(pasted, gt)}
    for sigma in sigmas:
        video = np.stack([detail_transfer(identity, p, a, sigma) for p, a in zip(pasted, alphas, strict=True)])
        scores[f"detail {sigma:g}"] = mean_psnr(video, gt)
    for w in hedges:
        video = np.clip(identity.astype(np.float32) + w * (pasted.astype(np.float32) - identity) + 0.5, 0, 255)
        scores[f"hedge {w:g}"] = mean_psnr(video.astype(np.uint8), gt)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("test_dir", type=Path)
    parser.add_argument("--sigma", type=float, nargs="+", default=[1.5, 2.0, 3.0])
    parser.add_argument("--hedge", type=float, nargs="+", default=[0.5, 0.75])
    parser.add_argument("--frames", type=int, default=32)
    args = parser.parse_args()
    clips = sorted(p for p in args.test_dir.iterdir() if (p / "high.mkv").exists())
    rows = []
    for clip in clips:
        scores = clip_scores(clip, args.sigma, args.hedge, args.frames)
        rows.append(scores)
        print(clip.name[:28].ljust(28), " ".join(f"{k}={v:.2f}" for k, v in scores.items()), flush=True)
    print("mean".ljust(28), " ".join(f"{k}={np.mean([r[k] for r in rows]):.2f}" for k in rows[0]))


if __name__ == "__main__":
    main()
