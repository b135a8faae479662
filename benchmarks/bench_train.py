"""Training speed: optimiser steps per second and peak memory of a preset on synthetic 192x192 data.

Usage: python benchmarks/bench_train.py [--presets tiny,small] [--device cpu|cuda] [--batch 4] [--steps 10]
       [--precision fp32|bf16] [--compile]
On CUDA it also prints model FLOP utilisation against --peak-tflops (default 989, H100 SXM dense bf16).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import make_prepared_dataset  # noqa: E402

from facenhance_cli.config import load_preset  # noqa: E402
from facenhance_cli.costs import measure_cost  # noqa: E402
from facenhance_cli.training import Trainer, TrainOptions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    print(
        f"# training step, batch {args.batch}, {args.precision}, device {args.device}, "
        f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    )
    print("| preset | params | steps/s | s/step | peak memory | MFU |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_prepared_dataset(Path(tmp) / "data", n_train=2, n_test=0, n_frames=max(args.batch, 4))
        for name in args.presets.split(","):
            config = load_preset(name).replace(
                **{
                    "training.batch_size": args.batch,
                    "training.validate_every": 10**9,
                    "training.sample_every": 10**9,
                    "training.checkpoint_every": 10**9,
                }
            )
            trainer = Trainer(
                TrainOptions(
                    data,
                    Path(tmp) / name,
                    config,
                    device=args.device,
                    precision=args.precision,
                    compile=args.compile,
                )
            )
            for _ in range(2):  # warm-up (and compilation)
                trainer.train_step()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = (time.perf_counter() - start) / args.steps
            if args.device.startswith("cuda"):
                memory = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
                flops = 3 * measure_cost(config).gflop_per_call * 1e9 * args.batch  # forward + 2x backward
                mfu = f"{flops / seconds / (args.peak_tflops * 1e12):.1%}"
            else:
                memory = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB (process RSS)"
                mfu = "-"
            params = sum(p.numel() for p in trainer.network.parameters()) / 1e6
            print(f"| {name} | {params:.1f} M | {1 / seconds:.2f} | {seconds:.2f} | {memory} | {mfu} |")


if __name__ == "__main__":
    main()
