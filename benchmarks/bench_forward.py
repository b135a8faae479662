"""Forward-pass speed of each preset: parameters, GFLOP, milliseconds, achieved TFLOP/s and MFU.

Usage: python benchmarks/bench_forward.py [--device cpu|cuda] [--presets paper,small,tiny] [--batches 1,4]
       [--repeat N] [--bf16] [--channels-last] [--compile] [--peak-tflops 989]
MFU is against --peak-tflops (default 989: H100 SXM dense bf16; pass your device's figure).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import load_preset
from facenhance_cli.costs import measure_cost
from facenhance_cli.nn.unet import build_network


def time_forward(net, batch: int, size: int, device: str, repeat: int, dtype: torch.dtype | None) -> float:
    """Median seconds of one no-grad forward at `batch` (every conditioning input given; unused ones ignored)."""
    x = torch.randn(batch, 3, size, size, device=device)
    low = torch.randn(batch, 3, 64, 64, device=device)
    mask = torch.rand(batch, 1, size, size, device=device)
    cond = Conditioning(x, low, prev_frame=x, pasted_frame=x, edit_mask=mask, flow_frame=x)
    t = torch.randint(0, 1000, (batch,), device=device)
    times = []
    with (
        torch.no_grad(),
        torch.autocast(device.split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        for i in range(repeat + 2):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            net(x, t, cond)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i >= 2:  # two warm-up calls
                times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--presets", default="paper,small,tiny")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (CUDA)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last network")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network first")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.bf16 else None
    machine = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    )
    layout = "channels_last" if args.channels_last else "NCHW"
    print(
        f"# forward pass, {'bf16' if args.bf16 else 'fp32'}, {layout}, {machine}, torch {torch.__version__}"
    )
    print("| preset | params | GFLOP/call | batch | ms | TFLOP/s | MFU |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.presets.split(","):
        config = load_preset(name)
        cost = measure_cost(config)
        net = build_network(config).eval().to(args.device)
        if args.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if args.compile:
            net = torch.compile(net)
        for batch in (int(b) for b in args.batches.split(",")):
            seconds = time_forward(net, batch, config.unet.image_size, args.device, args.repeat, dtype)
            tflops = cost.gflop_per_call * batch / seconds / 1e3
            print(
                f"| {name} | {cost.parameters / 1e6:.1f} M | {cost.gflop_per_call:.1f} | {batch} | "
                f"{seconds * 1e3:.1f} | {tflops:.3f} | {tflops / args.peak_tflops:.1%} |"
            )


if __name__ == "__main__":
    main()
