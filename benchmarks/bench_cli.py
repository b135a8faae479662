"""Whole `facenhance enhance` commands, as a user runs them, A/B interleaved: wall, system time, memory, PSNR.

Usage: python benchmarks/bench_cli.py [--clips ~/facenhance-data/test32] [--videos 8] [--frames 8]
       [--rounds 3] [--threads 2] [--variants before,torch,openvino] [--folders]
Workloads: the README's quick start (examples/low.mp4, 32 frames) and --videos prepared test clips cut to
--frames frames, enhanced by one command (`--folders`: the clip folders themselves, whole, as a user passes
what `prepare` wrote; their identity landmarks then come from meta.json, not a face detector). Each variant
is a fresh process (import, model load, OpenVINO's cached graph, decode, sampling, encode), so settings read
at start-up (the allocator, OpenMP) count.
Variants: `before` is torch fp32 with glibc's default allocator (FACENHANCE_MALLOC=system), the code's
behaviour before the allocator setting; `torch` is torch fp32 as `enhance` runs it now; `openvino` and
`openvino-bf16` the OpenVINO backend; `torch-1thread` torch with one thread; `torch-passive` and
`torch-active` torch with idle threads sleeping or spinning (OMP_WAIT_POLICY); `torch-fpc2` and
`openvino-fpc2` with 2 frames of a video per call; `torch-bf16` torch in bf16; `default` no flags (auto
backend and precision: what the README's quick start runs; prepared clips that carry a motion.csv
have their heads moved); `no-motion` the default with `--no-motion` (what following the head costs);
`full-exit` the same with the interpreter's full teardown at exit (FACENHANCE_FULL_EXIT=1, the behaviour before `main` skipped it); `v5` the same with `--model facenhance-small-v5`
(the 4-step model the default is distilled from; it is no longer in the tree: `git show
2880ac8:models/facenhance-small-v5.pt` into a folder named by FACENHANCE_MODELS); `model` the same with
`--model $FACENHANCE_BENCH_MODEL` (a name or path; default facenhance-small-v6, the default before v7: `git show 1d07c14~1:models/facenhance-small-v6.pt`).
Per command: wall seconds min / median over rounds, system CPU seconds and peak memory (max RSS) of the
median round, and PSNR against the ground truth (every frame) with its change against the first variant.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, tuple[dict[str, str], list[str]]] = {
    "before": ({"FACENHANCE_MALLOC": "system"}, ["--backend", "torch", "--precision", "fp32"]),
    "torch": ({}, ["--backend", "torch", "--precision", "fp32"]),
    "torch-fpc2": ({}, ["--backend", "torch", "--precision", "fp32", "--frames-per-call", "2"]),
    "torch-1thread": ({}, ["--backend", "torch", "--precision", "fp32", "--threads", "1"]),
    "torch-passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, ["--backend", "torch", "--precision", "fp32"]),
    "torch-active": ({"OMP_WAIT_POLICY": "ACTIVE"}, ["--backend", "torch", "--precision", "fp32"]),
    "openvino": ({}, ["--backend", "openvino", "--precision", "fp32"]),
    "openvino-fpc2": ({}, ["--backend", "openvino", "--precision", "fp32", "--frames-per-call", "2"]),
    "openvino-bf16": ({}, ["--backend", "openvino", "--precision", "bf16"]),
    "torch-bf16": ({}, ["--backend", "torch", "--precision", "bf16"]),
    "default": ({}, []),  # what a user gets: --backend auto --precision auto
    # The default with the head kept still where its motion is known (clips with motion.csv): motion's cost.
    "no-motion": ({}, ["--no-motion"]),
    # The default with the interpreter's full teardown at exit (the behaviour before the fast exit).
    "full-exit": ({"FACENHANCE_FULL_EXIT": "1"}, []),
    # The 4-step model the one-step default was distilled from, with the same auto backend and precision.
    "v5": ({}, ["--model", "facenhance-small-v5"]),
    # Any model by name or path, with the auto backend and precision: FACENHANCE_BENCH_MODEL.
    "model": ({}, ["--model", os.environ.get("FACENHANCE_BENCH_MODEL", "facenhance-small-v6")]),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=Path.home() / "facenhance-data" / "test32p")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default="before,torch,openvino")
    parser.add_argument(
        "--folders",
        action="store_true",
        help="enhance the --videos clip folders whole (as `prepare` wrote them)",
    )
    return parser.parse_args()


def workloads(args: argparse.Namespace, folder: Path) -> dict[str, tuple[list[str], list[tuple[Path, Path]]]]:
    """name -> (enhance's input arguments, [(output path, ground truth)]) with outputs under {out}."""
    from facenhance_cli.video import read_video, write_video

    quick_args = [str(REPO / "examples" / "low.mp4"), "-i", str(REPO / "examples" / "neutral.png")]
    quick_args += ["-o", "{out}/quick.mkv"]
    quick = (quick_args, [(Path("quick.mkv"), REPO / "examples" / "ground_truth.mp4")])
    if args.videos == 0:  # the quick start alone: no prepared clips needed
        return {"quick start (1 video x 32 frames)": quick}
    clips = sorted(p for p in args.clips.iterdir() if (p / "low.mkv").is_file())[: args.videos]
    if args.folders:  # the prepared clip folders themselves: whole clips, their meta.json and motion.csv
        inputs = [*(str(clip) for clip in clips), "-o", "{out}"]
        truths = [(Path(f"{clip.name}.mkv"), clip / "high.mkv") for clip in clips]
        return {"quick start (1 video x 32 frames)": quick, f"{len(clips)} prepared clips": (inputs, truths)}
    rows, truths = ["low,identity,output,motion"], []
    for clip in clips:
        low, fps = read_video(clip / "low.mkv", max_frames=args.frames)
        write_video(folder / f"{clip.name}.mkv", low, fps, lossless=True)
        motion = cut_motion(clip, len(low), folder)
        rows.append(f"{folder / clip.name}.mkv,{clip / 'identity.png'},{{out}}/{clip.name}.mkv,{motion}")
        truths.append((Path(f"{clip.name}.mkv"), clip / "high.mkv"))
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    batch = ([f"--pairs={folder / 'pairs.csv'}"], truths)
    return {"quick start (1 video x 32 frames)": quick, f"{len(truths)} videos x {args.frames} frames": batch}


def cut_motion(clip: Path, n_frames: int, folder: Path) -> str:
    """A prepared clip's head motion (its motion.csv) cut to its first n_frames rows, written under
    `folder`, as a pairs file's motion cell; empty for a clip without one (the head stays still)."""
    from facenhance_cli.motion import MOTION_FILE, HeadMotion, motion_csv_text, read_motion

    if not (clip / MOTION_FILE).is_file():
        return ""
    path = folder / f"{clip.name}.motion.csv"
    path.write_text(motion_csv_text(HeadMotion(read_motion(clip / MOTION_FILE).params[:n_frames])))
    return str(path)


def run_command(variant: str, inputs: list[str], out: Path, threads: int) -> tuple[float, float, float]:
    """(wall s, system CPU s, max RSS GiB) of one `facenhance enhance` process writing under `out`."""
    env_extra, flags = VARIANTS[variant]
    env = {**os.environ, **env_extra}
    pairs = [a for a in inputs if a.startswith("--pairs=")]
    if pairs:  # the pairs file names outputs under {out}: write this variant's copy
        source = Path(pairs[0].split("=", 1)[1])
        copy = out / "pairs.csv"
        copy.write_text(source.read_text().replace("{out}", str(out)))
        inputs = [f"--pairs={copy}"]
    command = [
        sys.executable,
        "-m",
        "facenhance_cli",
        "enhance",
        *(a.replace("{out}", str(out)) for a in inputs),
    ]
    command += [*flags, "--lossless", "--overwrite"]
    if "--threads" not in flags:
        command += ["--threads", str(threads)]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(
            f"{variant} failed: {process.stderr.read().decode()[-500:] if process.stderr else ''}"
        )
    return wall, usage.ru_stime, usage.ru_maxrss / 2**20


def mean_psnr(out: Path, truths: list[tuple[Path, Path]]) -> float:
    """Mean PSNR (dB) over every frame of the outputs against their ground truth."""
    import numpy as np

    from facenhance_cli.metrics.fidelity import psnr_frames
    from facenhance_cli.video import read_video

    values = []
    for name, truth in truths:
        made = read_video(out / name)[0]
        values.append(psnr_frames(made, read_video(truth, max_frames=len(made))[0]))
    return float(np.mean(np.concatenate(values)))


def main() -> None:
    args = parse_args()
    names = args.variants.split(",")
    print(f"# {platform_line(args.threads)}; {args.rounds} rounds, variants interleaved")
    with tempfile.TemporaryDirectory() as tmp:
        for workload, (inputs, truths) in workloads(args, Path(tmp)).items():
            runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
            for _ in range(args.rounds):
                for name in names:
                    out = Path(tmp) / name
                    out.mkdir(exist_ok=True)
                    runs[name].append(run_command(name, inputs, out, args.threads))
            psnr = {name: mean_psnr(Path(tmp) / name, truths) for name in names}
            print_table(workload, runs, psnr)


def print_table(
    workload: str, runs: dict[str, list[tuple[float, float, float]]], psnr: dict[str, float]
) -> None:
    """One markdown table per workload; speed-ups are against the first variant (min, median)."""
    base = next(iter(runs))
    base_walls = [r[0] for r in runs[base]]
    print(f"\n{workload}\n")
    print(
        "| variant | wall s min / median | speed-up (min, median) | system s | max RSS GiB | PSNR dB | vs first |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, results in runs.items():
        walls = [r[0] for r in results]
        median_run = sorted(results)[len(results) // 2]
        ratio_min = min(base_walls) / min(walls)
        ratio_median = statistics.median(base_walls) / statistics.median(walls)
        print(
            f"| {name} | {min(walls):.1f} / {statistics.median(walls):.1f} | {ratio_min:.2f}x, "
            f"{ratio_median:.2f}x | {median_run[1]:.1f} | {median_run[2]:.2f} | {psnr[name]:.3f} | "
            f"{psnr[name] - psnr[base]:+.3f} |"
        )
    sys.stdout.flush()


def platform_line(threads: int) -> str:
    """CPU model, cores, load and torch version, for the table's header."""
    import torch

    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown CPU",
    )  # fmt: skip
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    return f"{model}, {cores} cores, {threads} threads, load {load:.1f}, torch {torch.__version__}"


if __name__ == "__main__":
    main()
