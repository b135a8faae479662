"""Enhance speed and fidelity per backend: eager torch fp32 (today's default), torch bf16, OpenVINO bf16.

Usage: python benchmarks/bench_backends.py [--clips ~/facenhance-data/test32] [--videos 8] [--frames 8]
       [--threads 1] [--rounds 2] [--model models/<the default>.pt]
Two workloads: the README's quick start (examples/low.mp4, 32 frames, one video) and a batch of --videos
prepared test clips cut to --frames frames (2 videos per call, 8 frames per call, as `enhance` does on
the CPU). Rounds interleave the backends (A/B/C, A/B/C, ...); ms per frame is the whole `enhance_videos`
time (decode, paste, sampling, encode) over the frames written, min and median over rounds. PSNR is
against the ground truth (examples/ground_truth.mp4, each clip's high.mkv), and its change against fp32.
The OpenVINO graph is converted (or read from the cache) before timing; its compile per batch size
(about 0.5 s) is timed, as every `enhance` run pays it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from facenhance_cli.threads import plan_threads
from facenhance_cli.weights import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]
BACKENDS = "torch:fp32,torch:bf16,openvino:bf16"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=Path.home() / "facenhance-data" / "test32")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", type=Path, default=REPO / "models" / f"{DEFAULT_MODEL}.pt")
    parser.add_argument(
        "--backends", default=BACKENDS, help="backend:precision list; the first is the baseline"
    )
    args = parser.parse_args()
    args.backends = [tuple(item.split(":")) for item in args.backends.split(",")]
    return args


def workloads(args: argparse.Namespace, folder: Path) -> dict[str, list[tuple[Path, Path, Path]]]:
    """name -> [(low video, identity image, ground truth)]: the quick start and the cut test clips."""
    from facenhance_cli.video import read_video, write_video

    quick = [
        (
            REPO / "examples" / "low.mp4",
            REPO / "examples" / "neutral.png",
            REPO / "examples" / "ground_truth.mp4",
        )
    ]
    batch = []
    for clip in sorted(p for p in args.clips.iterdir() if (p / "low.mkv").is_file())[: args.videos]:
        low, fps = read_video(clip / "low.mkv", max_frames=args.frames)
        write_video(folder / f"{clip.name}.mkv", low, fps, lossless=True)
        batch.append((folder / f"{clip.name}.mkv", clip / "identity.png", clip / "high.mkv"))
    return {"quick start (1 video x 32 frames)": quick, f"{len(batch)} videos x {args.frames} frames": batch}


def run_once(model, items, backend: str, precision: str, threads: int, out: Path) -> tuple[float, list]:
    """(seconds per frame, output paths) of one `enhance_videos` run over `items`."""
    from facenhance_cli.enhance import EnhanceJob, EnhanceOptions, enhance_videos

    jobs = [EnhanceJob(low, identity, out / f"{low.stem}.mkv") for low, identity, _ in items]
    options = EnhanceOptions(batch_videos=2, precision=precision, backend=backend, threads=threads)
    options.lossless, options.overwrite = True, True
    start = time.perf_counter()
    results = enhance_videos(jobs, model, options)
    seconds = time.perf_counter() - start
    assert all(r.status == "done" for r in results), [r.message for r in results]
    return seconds / sum(r.frames for r in results), [job.output for job in jobs]


def mean_psnr(outputs: list[Path], items) -> float:
    """Mean PSNR (dB) of the outputs against their ground truth, over every frame."""
    import numpy as np

    from facenhance_cli.metrics.fidelity import psnr_frames
    from facenhance_cli.video import read_video

    values = []
    for output, (_, _, truth) in zip(outputs, items, strict=True):
        made = read_video(output)[0]
        values.append(psnr_frames(made, read_video(truth, max_frames=len(made))[0]))
    return float(np.mean(np.concatenate(values)))


def main() -> None:
    args = parse_args()
    plan = plan_threads(args.threads)  # before torch loads: PASSIVE waits on a busy machine
    import torch

    from facenhance_cli.checkpoint import load_for_inference

    torch.set_num_threads(plan.threads)
    model = load_for_inference(args.model)
    from facenhance_cli.backends import make_network

    for backend, precision in args.backends:  # convert OpenVINO graphs (or read them) before timing
        if backend == "openvino":
            make_network(model.network, model.config, backend, precision, plan.threads)
    print(f"# {args.model.name}, {plan.threads} threads, load {plan.load:.1f} on {plan.cores} cores, "
          f"{wait_policy()}, torch {torch.__version__}, {platform_name()}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name, items in workloads(args, Path(tmp)).items():
            times: dict[str, list[float]] = {f"{b} {p}": [] for b, p in args.backends}
            psnr: dict[str, float] = {}
            for _ in range(args.rounds):
                for backend, precision in args.backends:
                    key, out = f"{backend} {precision}", Path(tmp) / f"{backend}-{precision}"
                    out.mkdir(exist_ok=True)
                    seconds, outputs = run_once(model, items, backend, precision, plan.threads, out)
                    times[key].append(seconds * 1000)
                    psnr[key] = mean_psnr(outputs, items)
            print_table(name, times, psnr)


def print_table(name: str, times: dict[str, list[float]], psnr: dict[str, float]) -> None:
    """One markdown table: ms per frame min / median, speed-up against the first backend, PSNR and its change."""
    base_key = next(iter(times))
    base = times[base_key]
    print(f"\n{name}\n\n| backend | ms/frame min | median | speed-up (min, median) | PSNR dB | vs fp32 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for key, values in times.items():
        ratio_min = min(base) / min(values)
        ratio_median = statistics.median(base) / statistics.median(values)
        print(
            f"| {key} | {min(values):.0f} | {statistics.median(values):.0f} | {ratio_min:.2f}x, "
            f"{ratio_median:.2f}x | {psnr[key]:.3f} | {psnr[key] - psnr[base_key]:+.3f} |"
        )
    sys.stdout.flush()


def wait_policy() -> str:
    """OMP_WAIT_POLICY as this process has it."""
    return f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}"


def platform_name() -> str:
    """The CPU model name, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
