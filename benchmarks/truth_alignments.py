"""PSNR-U inside the face against two head-aligned truths: the registered one (`eval --align-truth`) and
the landmarks' fit (the way `prepare` aligned each low frame). docs/experiments.md row 41.

    python benchmarks/truth_alignments.py PREPARED_DIR [--method NAME=OUTPUT_DIR ...]

PREPARED_DIR's clip folders need motion.csv (`prepare`, or benchmarks/add_motion.py). The paste and the
detail paste are always scored; each --method folder holds one NAME.mkv per clip. Pixels: the edit mask
of frame 0 (16 px around the pasted face) where the registered alignment knows the truth, frames 1 on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from facenhance_cli.data import head_alignments
from facenhance_cli.evaluation.alignment import align_truth
from facenhance_cli.motion import read_motion
from facenhance_cli.pasting import edit_mask, locate_low_face, paste_low_face
from facenhance_cli.video import read_image, read_video


def truths(clip: Path, gt: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The registered and the landmark-aligned truth (F, S, S, 3), and the registered one's valid pixels."""
    meta = json.loads((clip / "meta.json").read_text())
    size = gt.shape[1]
    points = np.asarray(meta["landmarks_high"], np.float64) * (size / float(meta["size"]))
    registered = align_truth(gt, read_motion(clip / "motion.csv", len(gt)), points[0])
    fits = head_alignments(clip / "meta.json", size)
    assert fits is not None, f"{clip}: no landmarks in meta.json"
    landmarks = np.stack(
        [cv2.warpAffine(f, m, (size, size), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE)
         for f, m in zip(gt, fits, strict=False)]
    )  # fmt: skip
    return {"registered": registered.frames, "landmarks": landmarks}, registered.valid


def face_psnr_u(output: np.ndarray, truth: np.ndarray, known: np.ndarray) -> float:
    """Mean over frames 1 on of the PSNR over the `known` (F, S, S) pixels."""
    scores = []
    for n in range(1, len(truth)):
        diff = output[n][known[n]].astype(np.float64) - truth[n][known[n]].astype(np.float64)
        scores.append(10 * np.log10(255.0**2 / max(float(np.mean(diff**2)), 1e-10)))
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", type=Path)
    parser.add_argument("--method", action="append", default=[], help="NAME=DIR of NAME.mkv outputs")
    args = parser.parse_args()
    methods = dict(item.split("=", 1) for item in args.method)
    scores: dict[tuple[str, str], list[float]] = {}
    for clip in sorted(p for p in args.clips.iterdir() if (p / "motion.csv").is_file()):
        gt, low = read_video(clip / "high.mkv")[0], read_video(clip / "low.mkv")[0]
        identity = read_image(clip / "identity.png")
        matrix, _ = locate_low_face(identity, low[0])
        outputs = {
            "paste": np.stack([paste_low_face(identity, f, matrix) for f in low]),
            "detail": np.stack([paste_low_face(identity, f, matrix, 2.0) for f in low]),
        } | {name: read_video(Path(folder) / f"{clip.name}.mkv")[0] for name, folder in methods.items()}
        aligned, valid = truths(clip, gt)
        known = valid & (edit_mask(low[0], matrix, gt.shape[1]) > 0.5)[None]
        for name, output in outputs.items():
            for truth_name, truth in aligned.items():
                scores.setdefault((name, truth_name), []).append(face_psnr_u(output, truth, known))
    print(
        f"{'method':12s} {'registered':>10s} {'landmarks':>10s}   (face PSNR-U, {len(scores[('paste', 'landmarks')])} clips)"
    )
    for name in dict.fromkeys(n for n, _ in scores):
        print(
            f"{name:12s} {np.mean(scores[(name, 'registered')]):10.2f} {np.mean(scores[(name, 'landmarks')]):10.2f}"
        )


if __name__ == "__main__":
    main()
