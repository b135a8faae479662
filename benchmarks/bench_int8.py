"""Feasibility of int8 on the CPU: the network quantized by NNCF (post-training, OpenVINO) against fp32.

Usage: pip install nncf; python benchmarks/bench_int8.py [--clips ~/facenhance-data/test32] [--videos 8]
Not a facenhance feature: this measures whether one would pay. Calibration inputs are every network call
of enhancing the last 6 prepared clips (4 frames each, not the scored ones); the scored run enhances the
first --videos clips cut to 8 frames with the fp32 and the int8 graph in turn (OpenVINO, 2 videos per
call), and prints ms per frame of the network at batch 8 (interleaved, min / median of 5) and mean PSNR
against the ground truth. Measured 2026-12-03 on the AVX2-only EPYC (no VNNI), 2 threads, quiet: fp32
130 / 138 ms, int8 68 / 77 ms (torch fp32: about 90); PSNR 35.143 fp32, 35.111 int8 (-0.03 dB).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from facenhance_cli.weights import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=Path.home() / "facenhance-data" / "test32")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--model", type=Path, default=REPO / "models" / f"{DEFAULT_MODEL}.pt")
    return parser.parse_args()


def cut_jobs(clips: list[Path], folder: Path, out: str, frames: int) -> list:
    """EnhanceJobs for `clips` cut to `frames` frames (lossless copies in `folder`), outputs in folder/out."""
    from facenhance_cli.enhance import EnhanceJob
    from facenhance_cli.video import read_video, write_video

    (folder / out).mkdir(exist_ok=True)
    jobs = []
    for clip in clips:
        low_copy = folder / f"{clip.name}-{frames}.mkv"
        if not low_copy.exists():
            low, fps = read_video(clip / "low.mkv", max_frames=frames)
            write_video(low_copy, low, fps, lossless=True)
        jobs.append(EnhanceJob(low_copy, clip / "identity.png", folder / out / f"{clip.name}.mkv"))
    return jobs


def run_with_network(make_network, jobs: list, model) -> None:
    """enhance_videos over `jobs` with `make_network` in place of backends.make_network."""
    from facenhance_cli import backends
    from facenhance_cli.enhance import EnhanceOptions, enhance_videos

    options = EnhanceOptions(batch_videos=2, precision="fp32", backend="openvino", threads=2)
    options.lossless, options.overwrite = True, True
    real = backends.make_network
    backends.make_network = make_network
    try:
        enhance_videos(jobs, model, options)
    finally:
        backends.make_network = real


def calibration_inputs(model, fields: list[str], jobs: list) -> list[list]:
    """One input list per network row ([x_t, t, *fields], batch 1 arrays) over an enhance of `jobs`."""
    rows: list[list] = []

    def recorder(network, *_):
        def call(x_t, t, cond):
            arrays = [x_t.float().numpy().copy(), t.long().numpy().copy()]
            arrays += [getattr(cond, name).float().contiguous().numpy().copy() for name in fields]
            rows.extend([a[i : i + 1] for a in arrays] for i in range(x_t.shape[0]))
            return network(x_t, t, cond)

        return call

    run_with_network(recorder, jobs, model)
    return rows


def mean_psnr(jobs: list, clips: list[Path]) -> float:
    """Mean PSNR (dB) of the jobs' outputs against each clip's high.mkv, over every frame."""
    import numpy as np

    from facenhance_cli.metrics.fidelity import psnr_frames
    from facenhance_cli.video import read_video

    values = []
    for job, clip in zip(jobs, clips, strict=True):
        made = read_video(job.output)[0]
        values.append(psnr_frames(made, read_video(clip / "high.mkv", max_frames=len(made))[0]))
    return float(np.mean(np.concatenate(values)))


def main() -> None:
    args = parse_args()
    from facenhance_cli.threads import use_threads

    use_threads(2)
    import nncf
    import openvino as ov

    from facenhance_cli import backends
    from facenhance_cli.checkpoint import load_for_inference

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_batch import inputs

    model = load_for_inference(args.model)
    fields = list(model.config.unet.network_fields)
    core = ov.Core()
    fp32_graph = backends.cached_openvino_model(core, model.network, model.config, fields)
    clips = sorted(p for p in args.clips.iterdir() if (p / "low.mkv").is_file())
    folder = Path(tempfile.mkdtemp())
    rows = calibration_inputs(model, fields, cut_jobs(clips[-6:], folder, "calibration", 4))
    int8_graph = nncf.quantize(fp32_graph, nncf.Dataset(rows), subset_size=len(rows))
    properties = {
        "INFERENCE_PRECISION_HINT": "f32",
        "INFERENCE_NUM_THREADS": 2,
        "PERFORMANCE_HINT": "LATENCY",
    }
    networks = {
        "fp32": backends.OpenVINONetwork(core, fp32_graph, properties, fields),
        "int8": backends.OpenVINONetwork(core, int8_graph, properties, fields),
    }
    feed = inputs(model.config, 8)
    times: dict[str, list[float]] = {name: [] for name in networks}
    for round_index in range(6):  # round 0 warms up
        for name, network in networks.items():
            start = time.perf_counter()
            network(*feed)
            if round_index:
                times[name].append((time.perf_counter() - start) * 1000 / 8)
    print(f"# {args.model.name}, {len(rows)} calibration rows; ms per frame at batch 8, min / median of 5")
    for name, network in networks.items():
        jobs = cut_jobs(clips[: args.videos], folder, name, 8)
        run_with_network(lambda *_, network=network: network, jobs, model)
        values = times[name]
        print(
            f"{name}: {min(values):.0f} / {statistics.median(values):.0f} ms, "
            f"PSNR {mean_psnr(jobs, clips[: args.videos]):.3f} dB"
        )


if __name__ == "__main__":
    main()
