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


def detail_transfer(
    identity: np.ndarray, pasted: np.ndarray, alpha: np.ndarray, sigma: float, gate: float = 0.0
) -> np.ndarray:
    """identity + alpha * (G(pasted) - G(identity)): the paste's shading with the identity's texture.

    With `gate` (levels) > 0 the identity's texture is kept only where the coarse change is small, by
    w = exp(-(|change| / gate)^2), and the plain paste is taken where the expression moved features."""
    ident = identity.astype(np.float32)
    low_change = cv2.GaussianBlur(pasted.astype(np.float32), (0, 0), sigma) - cv2.GaussianBlur(
        ident, (0, 0), sigma
    )
    out = ident + alpha * low_change
    if gate > 0:
        size = np.abs(low_change).mean(axis=-1, keepdims=True)  # (S, S, 1)
        keep = cv2.GaussianBlur(np.exp(-((size / gate) ** 2)), (0, 0), sigma)[..., None]
        out = keep * out + (1 - keep) * pasted.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def write_estimate(folder: Path, clip: Path, video: np.ndarray) -> None:
    from facenhance_cli.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    write_video(folder / f"{clip.name}.mkv", video, fps=25, lossless=True)


def with_true_head_motion(video: np.ndarray, clip: Path) -> np.ndarray | None:
    """An oracle, not a method: each frame moved by the ground truth's own head motion since frame 0 (the
    similarity prepare's landmarks give), which no input of `enhance` carries. What motion costs."""
    from facenhance_cli.data import head_alignments

    transforms = head_alignments(clip / "meta.json", video.shape[1])
    if transforms is None:
        return None
    size = video.shape[1]
    return np.stack(
        [
            cv2.warpAffine(f, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
            for f, m in zip(video, transforms, strict=False)
        ]
    )  # fmt: skip


def clip_scores(
    clip: Path,
    sigmas: list[float],
    hedges: list[float],
    gates: list[float],
    max_frames: int,
    write: Path | None,
) -> dict[str, float]:
    gt, _ = read_video(clip / "high.mkv", max_frames)
    low, _ = read_video(clip / "low.mkv", max_frames)
    identity = cv2.cvtColor(cv2.imread(str(clip / "identity.png")), cv2.COLOR_BGR2RGB)
    matrix, _ = locate_low_face(identity, low[0])
    size = identity.shape[0]
    pasted = np.stack([paste_low_face(identity, f, matrix) for f in low])
    alphas = [paste_alpha(f, matrix, size) for f in low]
    scores = {
        "identity": mean_psnr(np.repeat(identity[None], len(gt), 0), gt),
        "paste": mean_psnr(pasted, gt),
    }
    for sigma in sigmas:
        video = np.stack(
            [detail_transfer(identity, p, a, sigma) for p, a in zip(pasted, alphas, strict=True)]
        )
        scores[f"detail {sigma:g}"] = mean_psnr(video, gt)
        for gate in gates:
            video = np.stack(
                [detail_transfer(identity, p, a, sigma, gate) for p, a in zip(pasted, alphas, strict=True)]
            )
            scores[f"detail {sigma:g} gate {gate:g}"] = mean_psnr(video, gt)
            if write is not None:
                write_estimate(write / f"detail{sigma:g}_gate{gate:g}", clip, video)
                moved = with_true_head_motion(video, clip)
                if moved is not None:
                    scores[f"oracle motion {sigma:g} gate {gate:g}"] = mean_psnr(moved, gt)
                    write_estimate(write / f"oracle_detail{sigma:g}_gate{gate:g}", clip, moved)
    for w in hedges:
        video = np.clip(
            identity.astype(np.float32) + w * (pasted.astype(np.float32) - identity) + 0.5, 0, 255
        )
        scores[f"hedge {w:g}"] = mean_psnr(video.astype(np.uint8), gt)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("test_dir", type=Path)
    parser.add_argument("--sigma", type=float, nargs="+", default=[1.5, 2.0, 3.0])
    parser.add_argument("--hedge", type=float, nargs="*", default=[0.5, 0.75])
    parser.add_argument("--gate", type=float, nargs="*", default=[], help="levels; see detail_transfer")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--write", type=Path, help="write each gated detail video here (to `eval` them)")
    args = parser.parse_args()
    clips = sorted(p for p in args.test_dir.iterdir() if (p / "high.mkv").exists())
    rows = []
    for clip in clips:
        scores = clip_scores(clip, args.sigma, args.hedge, args.gate, args.frames, args.write)
        rows.append(scores)
        print(clip.name[:28].ljust(28), " ".join(f"{k}={v:.2f}" for k, v in scores.items()), flush=True)
    print("mean".ljust(28), " ".join(f"{k}={np.mean([r[k] for r in rows]):.2f}" for k in rows[0]))


if __name__ == "__main__":
    main()
