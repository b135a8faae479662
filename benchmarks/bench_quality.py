"""Quality vs sampling steps: PSNR/SSIM of one model on a few prepared test clips at several DDIM step counts.

Usage: python benchmarks/bench_quality.py --model MODEL --data PREPARED [--clips 4] [--frames 8]
       [--steps 10,25,50,100,1000] [--device cpu]
Clips come from the test split of PREPARED (one per subject first); only the first --frames frames of each
are enhanced, so the 1000-step row stays affordable on a CPU. The identity baseline (the identity image
repeated) and the paste baseline (the low face warped onto it) are printed for scale.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from facenhance_cli.checkpoint import load_for_inference
from facenhance_cli.enhance import EnhanceJob, EnhanceOptions, enhance_videos
from facenhance_cli.evaluation import paste_baseline
from facenhance_cli.metrics.fidelity import psnr_frames, ssim_frames
from facenhance_cli.video import read_image, read_video, write_video
from facenhance_cli.weights import find_model


def pick_clips(data: Path, n: int) -> list[Path]:
    """Test-split clips, one per subject first, then the rest, in manifest order."""
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines() if line.strip()]
    test = [r for r in rows if r.get("split") == "test" and r.get("status") not in {"failed", "skipped"}]
    first_per_subject, rest, seen = [], [], set()
    for r in test:
        (rest if r.get("subject") in seen else first_per_subject).append(r)
        seen.add(r.get("subject"))
    return [data / r["clip_id"] for r in (first_per_subject + rest)[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", default="10,25,50,100,1000", help="DDIM steps, or steps@strength (SDEdit)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--keep", type=Path, default=None, help="Copy the outputs into this folder.")
    args = parser.parse_args()
    model = load_for_inference(find_model(args.model), args.device)
    clips = pick_clips(args.data, args.clips)
    with tempfile.TemporaryDirectory() as tmp:
        jobs, truths, identity_scores, paste_scores = [], [], [], []
        for clip in clips:
            low, fps = read_video(clip / "low.mkv", max_frames=args.frames)
            truth, _ = read_video(clip / "high.mkv", max_frames=args.frames)
            identity = read_image(clip / "identity.png")
            write_video(Path(tmp) / f"{clip.name}.mkv", low, fps, lossless=True)
            jobs.append((Path(tmp) / f"{clip.name}.mkv", clip / "identity.png", clip.name))
            truths.append(truth)
            repeated = np.repeat(identity[None], len(truth), 0)
            identity_scores.append((psnr_frames(repeated, truth), ssim_frames(repeated, truth)))
            pasted = paste_baseline(identity, low)
            paste_scores.append((np.mean(psnr_frames(pasted, truth)), np.mean(ssim_frames(pasted, truth))))
        print(
            f"# quality vs steps: model {model.path.name}, {len(clips)} test clips x {args.frames} frames, "
            f"device {args.device}"
        )
        print("| sampler | PSNR (dB) | SSIM | seconds / frame |")
        print("| --- | ---: | ---: | ---: |")
        ident_psnr = np.mean([np.mean(p[np.isfinite(p)]) for p, _ in identity_scores])
        ident_ssim = np.mean([np.mean(s) for _, s in identity_scores])
        for spec in args.steps.split(","):
            steps, _, strength_text = spec.partition("@")
            steps, strength = int(steps), float(strength_text or 1.0)
            label = f"ddim {steps}" + (f", strength {strength:g}" if strength < 1 else "")
            out_dir = Path(tmp) / f"out{spec}"
            batch = [EnhanceJob(low, identity, out_dir / f"{name}.mkv") for low, identity, name in jobs]
            start = time.perf_counter()
            options = EnhanceOptions(
                sampler="ddim",
                steps=steps,
                eta=0.0,
                strength=strength,
                batch_videos=len(batch),
                device=args.device,
                lossless=True,
            )
            enhance_videos(batch, model, options)
            seconds = (time.perf_counter() - start) / (len(batch) * args.frames)
            psnrs, ssims = [], []
            for job, truth in zip(batch, truths, strict=True):
                out, _ = read_video(job.output)
                psnrs.append(np.mean(psnr_frames(out, truth)))
                ssims.append(np.mean(ssim_frames(out, truth)))
            print(f"| {label} | {np.mean(psnrs):.2f} | {np.mean(ssims):.4f} | {seconds:.2f} |", flush=True)
            if args.keep is not None:
                import shutil

                shutil.copytree(out_dir, args.keep / f"ddim{spec}", dirs_exist_ok=True)
        print(f"| identity baseline | {ident_psnr:.2f} | {ident_ssim:.4f} | - |")
        paste_psnr, paste_ssim = np.mean(paste_scores, axis=0)
        print(f"| paste baseline | {paste_psnr:.2f} | {paste_ssim:.4f} | - |")


if __name__ == "__main__":
    main()
