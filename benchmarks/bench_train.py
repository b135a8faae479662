"""Training speed: seconds per optimiser step and samples/s of training variants, A/B interleaved.

Usage: python benchmarks/bench_train.py [--variants small,small@bf16,small-v2] [--device cpu|cuda]
       [--batch 4] [--steps 10] [--compile]
A variant is PRESET[@PRECISION]; `small-v2` is the small preset with facenhance-small-v2's recipe (x0
output added to the paste, no edit mask, no EDM, no colour gain). Steps of the variants alternate, so a
load that comes and goes on a shared machine hits them alike; min and median are printed. The data
(synthetic prepared clips) includes the per-sample paste and edit mask a real run computes.
On CUDA it also prints model FLOP utilisation against --peak-tflops (default 989, H100 SXM dense bf16).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import make_prepared_dataset  # noqa: E402

from facenhance_cli.config import FacenhanceConfig, load_preset  # noqa: E402
from facenhance_cli.costs import measure_cost  # noqa: E402
from facenhance_cli.training import Trainer, TrainOptions  # noqa: E402

V2_RECIPE = {
    "unet.use_edit_mask": False,
    "diffusion.preconditioning": "none",
    "training.color_jitter": 0.0,
}


def variant_config(name: str, batch: int) -> tuple[FacenhanceConfig, str]:
    """(config, precision) of a PRESET[@PRECISION] variant name."""
    preset, _, precision = name.partition("@")
    overrides = dict(V2_RECIPE) if preset == "small-v2" else {}
    config = load_preset("small" if preset == "small-v2" else preset).replace(
        **{
            **overrides,
            "training.batch_size": batch,
            "training.validate_every": 10**9,
            "training.sample_every": 10**9,
            "training.checkpoint_every": 10**9,
        }
    )
    return config, precision or "fp32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="small-v2,small,small@bf16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    from facenhance_cli.allocator import reuse_freed_memory

    kept = reuse_freed_memory()  # as `train` does; FACENHANCE_MALLOC=system for glibc's defaults
    print(
        f"# allocator {'heap kept' if kept else 'default'}, training step, batch {args.batch}, device {args.device}, {torch.get_num_threads()} CPU threads, "
        f"torch {torch.__version__}; {args.steps} steps per variant, interleaved"
    )
    print("| variant | params | s/step (min) | s/step (median) | samples/s (median) | peak memory | MFU |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_prepared_dataset(Path(tmp) / "data", n_train=2, n_test=0, n_frames=max(args.batch, 4))
        trainers = {}
        for name in args.variants.split(","):
            config, precision = variant_config(name, args.batch)
            options = TrainOptions(
                data, Path(tmp) / name, config, device=args.device, precision=precision, compile=args.compile
            )
            trainers[name] = Trainer(options)
            for _ in range(2):  # warm-up (and compilation)
                trainers[name].train_step()
        times: dict[str, list[float]] = {name: [] for name in trainers}
        for _ in range(args.steps):
            for name, trainer in trainers.items():
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
                trainer.train_step()
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
        for name, trainer in trainers.items():
            best, median = min(times[name]), statistics.median(times[name])
            if args.device.startswith("cuda"):
                memory = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB (all variants)"
                flops = 3 * measure_cost(trainer.config).gflop_per_call * 1e9 * args.batch  # fwd + 2x bwd
                mfu = f"{flops / median / (args.peak_tflops * 1e12):.1%}"
            else:
                memory = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB (process)"
                mfu = "-"
            params = sum(p.numel() for p in trainer.network.parameters()) / 1e6
            print(
                f"| {name} | {params:.1f} M | {best:.2f} | {median:.2f} | {args.batch / median:.2f} "
                f"| {memory} | {mfu} |"
            )


if __name__ == "__main__":
    main()
