"""How much PSNR could an edit confined to a region buy? Oracles scored beside a model by `eval`'s own code.

Each oracle is the model's output with the truth blended in over one region, by the region's weight:
  face-oracle   the low frame's face (its non-black pixels) warped as the paste warps them, not feathered,
  mask-oracle   the edit mask a model may change (`pasting.edit_mask`: the face grown by 16 px, feathered),
  grown-oracle  the edit mask grown by 16 px more and blurred by a 4 px Gaussian.
Nothing else changes, so each oracle's PSNR is the ceiling for a perfect edit there, on the same truth
(`--align-truth`: the head-aligned truth of the quality issue) and the same frames as `eval` scores.
The oracles are added to `eval`'s baselines for the run (the module's `baseline_videos` and `load_clip`
are wrapped in this process only). docs/experiments.md row 27 holds what it gave.

    python benchmarks/edit_ceiling.py GEN_DIR PREPARED_TEST_DIR [--raw-truth]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

import facenhance_cli.evaluation.scores as scores
from facenhance_cli.evaluation.baselines import NEEDS
from facenhance_cli.evaluation.options import EvalOptions
from facenhance_cli.evaluation.pairing import find_pairs
from facenhance_cli.pasting import edit_mask, locate_low_face, low_face_mask

ORACLES = ("face-oracle", "mask-oracle", "grown-oracle")
EXTRA_PX = 16  # the grown oracle's extra reach, as the edit mask's own margin


def regions(identity: np.ndarray, low: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Per oracle, each frame's (S, S) weight in [0, 1]."""
    size = identity.shape[0]
    matrix, _ = locate_low_face(identity, low[0])
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * EXTRA_PX + 1,) * 2)
    out: dict[str, list[np.ndarray]] = {name: [] for name in ORACLES}
    for frame in low:
        mask = edit_mask(frame, matrix, size)
        out["face-oracle"].append(cv2.warpAffine(low_face_mask(frame), matrix, (size, size)))
        out["mask-oracle"].append(mask)
        out["grown-oracle"].append(np.clip(cv2.GaussianBlur(cv2.dilate(mask, kernel), (0, 0), 4.0), 0, 1))
    return out


def install_oracles() -> None:
    """Wrap eval's clip loading (to see the model's frames) and baselines (to add the oracles)."""
    seen: dict[str, np.ndarray] = {}
    load_clip, baseline_videos = scores.load_clip, scores.baseline_videos

    def load_and_keep(pair):  # type: ignore[no-untyped-def]
        clip = load_clip(pair)
        seen["gen"] = clip.gen
        return clip

    def with_oracles(baselines, identity, low, gt, motion=None):  # type: ignore[no-untyped-def]
        videos, skipped = baseline_videos(
            tuple(b for b in baselines if b in NEEDS), identity, low, gt, motion
        )
        gen, truth = seen["gen"].astype(np.float32), gt.astype(np.float32)
        for name, weights in regions(identity, low).items():
            weight = np.stack(weights)[..., None]  # (F, S, S, 1)
            videos[name] = np.clip(weight * truth + (1 - weight) * gen + 0.5, 0, 255).astype(np.uint8)
        return videos, skipped

    scores.load_clip, scores.baseline_videos = load_and_keep, with_oracles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gen", type=Path)
    parser.add_argument("truth", type=Path)
    parser.add_argument("--raw-truth", action="store_true", help="score against the raw truth instead")
    args = parser.parse_args()
    install_oracles()
    pairs, _ = find_pairs([args.gen], [str(args.truth)])
    weights = os.environ.get("FACENHANCE_WEIGHTS")
    options = EvalOptions(
        metrics=("psnr",),
        baselines=("detail", *ORACLES),
        align_truth=not args.raw_truth,
        weights_dir=Path(weights) if weights else None,
    )
    report = scores.evaluate(pairs, options).report
    print(f"{'method':14s} {'PSNR':>7s} {'PSNR-U':>7s}")
    for name, row in {"model": report, **report["baselines"]}.items():
        print(f"{name:14s} {row['psnr']:7.2f} {row['psnr_unseen']:7.2f}")


if __name__ == "__main__":
    main()
