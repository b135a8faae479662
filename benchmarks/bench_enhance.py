"""Enhance speed: seconds and network calls for one 32-frame video, per preset and DDIM step count.

Usage: python benchmarks/bench_enhance.py [--presets tiny,small] [--steps 10,25,50] [--frames 32]
       [--measure-frames 4] [--device cpu|cuda] [--batch-videos 1] [--bf16] [--compile]
--compile runs the network as `enhance --compile` does (torch.compile; CUDA graphs on CUDA); the warm-up
frame, not timed, pays the compile.
Random weights (speed does not depend on them). To keep CPU runs short, only --measure-frames frames are
sampled and the time is scaled to --frames; the paper's 1000-step sampler is extrapolated from the
per-call time of the measured runs (stated in the output).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from facenhance_cli.accel import compile_network
from facenhance_cli.conditioning import collate, frame_images
from facenhance_cli.config import load_preset
from facenhance_cli.diffusion.denoiser import make_denoiser
from facenhance_cli.diffusion.recurrent import generate_video
from facenhance_cli.diffusion.samplers import ddim
from facenhance_cli.diffusion.schedule import make_schedule
from facenhance_cli.nn.unet import build_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--steps", default="10,25,50")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--measure-frames", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-videos", type=int, default=1)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.bf16 else None
    print(
        f"# enhance, {args.frames}-frame video(s), batch {args.batch_videos}, device {args.device}, "
        f"{'compiled' if args.compile else 'eager'}, channels_last, "
        f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    )
    print("| preset | sampler | network calls / video | seconds / video | seconds / call | note |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for name in args.presets.split(","):
        config = load_preset(name)
        size = config.unet.image_size
        net = build_network(config).eval().to(args.device).to(memory_format=torch.channels_last)
        if args.compile:
            net = compile_network(net, args.device)
        schedule = make_schedule(config.diffusion)
        denoiser = make_denoiser(net, config, schedule, autocast_dtype=dtype)
        b = args.batch_videos
        rng = np.random.default_rng(0)
        identity = rng.integers(0, 256, (size, size, 3), np.uint8)  # random images: speed only
        low_px_to_identity = np.float64([[size / 64, 0, 0], [0, size / 64, 0]])
        per_call = []
        for steps in (int(s) for s in args.steps.split(",")):
            lows = [rng.integers(0, 256, (64, 64, 3), np.uint8) for _ in range(args.measure_frames)]
            conds = [
                collate([frame_images(config, identity, low, low_px_to_identity)] * b, args.device)
                for low in lows
            ]
            with torch.no_grad():
                frames = generate_video(
                    denoiser, ddim, schedule, conds, list(range(b)), config.conditioning, {"steps": steps}
                )
                next(frames)  # warm-up frame, not timed
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in frames:
                    pass
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
            timed = args.measure_frames - 1
            seconds_per_frame = (time.perf_counter() - start) / timed / b
            per_call.append(seconds_per_frame / steps)
            note = "" if timed >= args.frames else f"{timed} frames timed, scaled to {args.frames}"
            print(
                f"| {name} | ddim {steps} | {steps * args.frames} | {seconds_per_frame * args.frames:.1f} | "
                f"{seconds_per_frame / steps:.4f} | {note} |"
            )
        call = sorted(per_call)[len(per_call) // 2]
        print(
            f"| {name} | ddim 1000 (paper) | {1000 * args.frames} | {call * 1000 * args.frames:.0f} | "
            f"{call:.4f} | extrapolated from the per-call time above |"
        )


if __name__ == "__main__":
    main()
