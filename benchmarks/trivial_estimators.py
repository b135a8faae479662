"""How far can estimators with no network go on a prepared test split? PSNR per clip beside the paste.

The ground truth's head moves (the low frames are aligned and do not say where), so no method reaches
every pixel; what the paste loses against the identity image on near-static clips is detail the identity
already has. Estimators, all from the identity image and the low video only (what `enhance` sees):
  identity     the identity image, repeated,
  paste        the low face pasted (`pasting.paste_low_face`), what the eval baseline scores,
  detail       the paste's low frequencies plus the identity's high frequencies inside the paste's
               alpha: `paste_low_face(..., detail_sigma)` (the `detail` eval baseline, small's base),
  detail gate  the detail paste where the coarse change is small, the plain paste where it is not,
  oracle       (with --write) the gated detail moved by the truth's own head motion: not a method,
  hedge W      identity + W * (paste - identity).
PSNR as `eval` reports it: per frame, identical frames left out, mean over frames, then over clips.

    python benchmarks/trivial_estimators.py PREPARED_TEST_DIR [--sigma 1.5 2 3] [--gate 8 16] [--write DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from facenhance_cli.metrics.fidelity import psnr_frames
from facenhance_cli.pasting import locate_low_face, paste_low_face
from facenhance_cli.video import read_video


def mean_psnr(video: np.ndarray, gt: np.ndarray) -> float:
    values = psnr_frames(video, gt)
    return float(values[np.isfinite(values)].mean())


def gated(
    identity: np.ndarray, plain: np.ndarray, detail: np.ndarray, sigma: float, gate: float
) -> np.ndarray:
    """The detail paste where the coarse change |G(plain) - G(identity)| is small, the plain paste where the
    expression moved features: weight exp(-(change / gate)^2), change in levels, G of `sigma` px."""
    change = cv2.GaussianBlur(plain.astype(np.float32), (0, 0), sigma) - cv2.GaussianBlur(
        identity.astype(np.float32), (0, 0), sigma
    )
    keep = np.exp(-((np.abs(change).mean(axis=-1) / gate) ** 2))  # (S, S)
    keep = cv2.GaussianBlur(keep, (0, 0), sigma)[..., None]
    out = keep * detail.astype(np.float32) + (1 - keep) * plain.astype(np.float32)
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
    pasted = np.stack([paste_low_face(identity, f, matrix) for f in low])
    scores = {
        "identity": mean_psnr(np.repeat(identity[None], len(gt), 0), gt),
        "paste": mean_psnr(pasted, gt),
    }
    for sigma in sigmas:
        detail = np.stack([paste_low_face(identity, f, matrix, sigma) for f in low])
        scores[f"detail {sigma:g}"] = mean_psnr(detail, gt)
        for gate in gates:
            video = np.stack(
                [gated(identity, p, d, sigma, gate) for p, d in zip(pasted, detail, strict=True)]
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
    parser.add_argument("--gate", type=float, nargs="*", default=[], help="levels; see gated()")
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
