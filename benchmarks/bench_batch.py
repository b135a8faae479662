"""Network ms per frame against frames per call, per layout and backend, on this machine's CPU.

Usage: python benchmarks/bench_batch.py [--model models/<the default>.pt] [--batches 1,2,4,8,16]
       [--variants torch-nchw,torch-cl,openvino] [--rounds 5] [--threads N]
The shipped model's network is called with enhance's inputs (random images of the right shapes); rounds
interleave every variant and batch (A/B/C, A/B/C, ...) so a shared machine's load falls on all alike.
Prints ms per frame (one call's time over its rows), min and median over rounds, and the ratio of each
cell's median to the first variant at batch 1.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from facenhance_cli.weights import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / f"{DEFAULT_MODEL}.pt")
    parser.add_argument("--batches", default="1,2,4,8,16")
    parser.add_argument("--variants", default="torch-nchw,torch-cl,openvino")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args()


def make_variant(name: str, model, threads: int):
    """The forward pass a variant name stands for: torch NCHW, torch channels_last, or OpenVINO fp32."""
    import copy

    import torch

    from facenhance_cli.backends import make_network

    if name == "torch-nchw":
        return copy.deepcopy(model.network).to(memory_format=torch.contiguous_format)
    if name == "torch-cl":  # as load_for_inference gives it
        return copy.deepcopy(model.network).to(memory_format=torch.channels_last)
    if name == "openvino":
        return make_network(model.network, model.config, "openvino", "fp32", threads)
    raise SystemExit(f"unknown variant {name!r}")


def inputs(config, batch: int):
    """(x_t, t, cond) of `batch` rows with the shapes enhance gives the network."""
    import torch

    from facenhance_cli.conditioning import Conditioning

    size, low = config.unet.image_size, config.encoder.low_size
    image = torch.rand(batch, 3, size, size) * 2 - 1  # (B, 3, S, S)
    cond = Conditioning(
        identity_image=image,
        low_frame=torch.rand(batch, 3, low, low) * 2 - 1,  # (B, 3, 64, 64)
        prev_frame=image,
        pasted_frame=image,
        edit_mask=torch.rand(batch, 1, size, size),  # (B, 1, S, S)
        flow_frame=image,
    )
    return torch.randn(batch, 3, size, size), torch.full((batch,), 500), cond


def main() -> None:
    args = parse_args()
    from facenhance_cli.threads import use_threads

    plan = use_threads(args.threads)  # the allocator too: FACENHANCE_MALLOC=system for glibc's defaults
    import torch

    from facenhance_cli.checkpoint import load_for_inference

    model = load_for_inference(args.model)
    names = args.variants.split(",")
    variants = {name: make_variant(name, model, plan.threads) for name in names}
    batches = [int(b) for b in args.batches.split(",")]
    feeds = {b: inputs(model.config, b) for b in batches}
    times: dict[tuple[str, int], list[float]] = {(n, b): [] for n in names for b in batches}
    with torch.no_grad():
        for round_index in range(args.rounds + 1):  # round 0 warms up (and compiles OpenVINO per batch)
            for batch in batches:
                for name in names:
                    start = time.perf_counter()
                    variants[name](*feeds[batch])
                    if round_index:
                        times[name, batch].append((time.perf_counter() - start) * 1000 / batch)
    print(f"# {args.model.name}, {plan.threads} threads, load {plan.load:.1f} on {plan.cores} cores, "
          f"torch {torch.__version__}; ms per frame, min / median of {args.rounds}")  # fmt: skip
    base = statistics.median(times[names[0], batches[0]])
    print("| frames per call | " + " | ".join(names) + " |")
    print("| ---: |" + " ---: |" * len(names))
    for batch in batches:
        cells = []
        for name in names:
            values = times[name, batch]
            median = statistics.median(values)
            cells.append(f"{min(values):.0f} / {median:.0f} ({base / median:.2f}x)")
        print(f"| {batch} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
