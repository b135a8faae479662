"""Train on a lent GPU in one call (the quality issue), with the largest batch that fits, by one of two recipes:
  truth    (the shipped default's, v8: docs/experiments.md rows 31-32) the one-step model trained on the
           head-aligned truth at t = 999 with the detail term, its expression gate back on at export: OUT/student.pt;
  distill  fine-tune a model as a 4-step denoiser (the teacher), then distil it into a one-step student:
           OUT/teacher.pt and OUT/student.pt.
Models are split into parts small enough for the device tool to bring back (16 MiB each).

Usage (gpu_train.sh runs it there): python benchmarks/gpu_train.py DATA OUT [--recipe truth|distill] [--init MODEL]
       [--student-init MODEL] [--truth-minutes 7.5] [--denoise-minutes 5] [--distill-minutes 2.5] [--device cuda]
Writes OUT/NAME.pt.part-* (rejoin with `cat NAME.part-* > NAME.pt`), OUT/*.jsonl (the runs' logs) and
OUT/summary.json (batch, steps, seconds, validation losses).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

PART_BYTES = 15 * 2**20


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--recipe", choices=("truth", "distill"), default="truth")
    parser.add_argument("--init", default=None, help="the first run's start (default: the shipped default)")
    parser.add_argument(
        "--student-init", default=None,
        help="the student's network and start ('default': the shipped default, a patch-2 student, with --init "
        "its 4-step ancestor); without it the student is the teacher's network, from the teacher",
    )  # fmt: skip
    parser.add_argument("--denoise-minutes", type=float, default=5.0)
    parser.add_argument("--distill-minutes", type=float, default=2.5)
    parser.add_argument("--truth-minutes", type=float, default=7.5)
    parser.add_argument("--detail-weight", type=float, default=10.0, help="truth: training.detail_weight")
    parser.add_argument(
        "--target-motion",
        choices=("landmarks", "registered"),
        default="landmarks",
        help="truth: training.target_motion (registered for data prepared with --low-alignment steady)",
    )
    parser.add_argument(
        "--edit-margin", type=int, default=None, help="truth: conditioning.edit_margin (default: init's)"
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--lr", type=float, default=None, help="default: 2e-4 (truth), 5e-4 (distill)")
    parser.add_argument("--teacher-steps", type=int, default=4, help="the teacher's DDIM steps (karras)")
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=16, help="threads building samples")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/facenhance-gpu-runs"), help="run folders")
    return parser.parse_args()


def largest_batch(config, device: str, limit: int) -> int:
    """The largest power-of-two batch (<= limit) whose bf16 forward and backward fit on the device."""
    from facenhance_cli.conditioning import collate, frame_images
    from facenhance_cli.nn.unet import build_network

    network = build_network(config).to(device)
    size, low_size = config.unet.image_size, config.encoder.low_size
    identity = np.zeros((size, size, 3), np.uint8)
    low = np.zeros((low_size, low_size, 3), np.uint8)
    matrix = np.array([[size / low_size, 0, 0], [0, size / low_size, 0]], np.float64)
    images = frame_images(config, identity, low, matrix, prev_frame=identity)
    batch = limit
    while batch > 1:
        try:
            cond = collate([images] * batch, device)
            x = torch.randn(batch, 3, size, size, device=device)
            t = torch.randint(0, 1000, (batch,), device=device)
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
                network(x, t, cond).float().mean().backward()
            return batch
        except torch.cuda.OutOfMemoryError:
            network.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            batch //= 2
    return 1


def run_phase(args, name: str, config, init_state, minutes: float, teacher=None, export_config=None) -> dict:
    """One training run in RUNS/NAME for `minutes`; its EMA exported to OUT/NAME.pt (fp16) with `export_config`
    (default: the run's), its log beside. The run folders stay out of OUT: the device tool brings back 8 files."""
    from facenhance_cli.checkpoint import save_checkpoint
    from facenhance_cli.training import TrainOptions, train

    run_dir = args.runs / name
    options = TrainOptions(
        data_dir=args.data,
        run_dir=run_dir,
        config=config,
        device=args.device,
        precision="bf16",
        workers=args.workers,
        init_state=init_state,
        init_source="gpu_train",
        max_seconds=60 * minutes,
        teacher=teacher,
    )
    started = time.perf_counter()
    summary = train(options)
    payload = torch.load(run_dir / "final.pt", weights_only=True)
    ema = {k: v.half() if v.is_floating_point() else v for k, v in payload["ema"].items()}
    save_checkpoint(args.out / f"{name}.pt", export_config or config, ema, payload["meta"])
    log = run_dir / "log.jsonl"  # absent when the run ended before its first log line
    (args.out / f"{name}.jsonl").write_text(log.read_text() if log.is_file() else "")
    return {**summary, "wall_seconds": time.perf_counter() - started}


def student_start(args, teacher_config, teacher_state: dict) -> tuple:
    """The student's config (one step, distilling) and first weights: --student-init's network and weights
    (its training settings the teacher's), or the teacher's own."""
    from facenhance_cli.checkpoint import load_for_inference
    from facenhance_cli.weights import find_model

    config = teacher_config.replace(**{"training.objective": "distill", "sampling.steps": 1})
    if args.student_init is None:
        return config, teacher_state
    student = load_for_inference(find_model(None if args.student_init == "default" else args.student_init))
    return dataclasses.replace(config, unet=student.config.unet), student.network.state_dict()


def truth_recipe(args, init, settings: dict) -> dict:
    """The shipped default's recipe: `init` trained on the aligned truth at t = 999 with the detail term, the
    gate off in training and `init`'s at export; OUT/student.pt."""
    config = init.config.replace(
        **{
            **settings,
            "training.objective": "denoise",
            "training.min_timestep": init.config.diffusion.num_timesteps - 1,
            "training.align_targets": True,
            "training.target_motion": args.target_motion,
            "training.detail_weight": args.detail_weight,
            "conditioning.edit_gate_levels": 0.0,
            "conditioning.edit_margin": args.edit_margin or init.config.conditioning.edit_margin,
        }
    )
    export = config.replace(**{"conditioning.edit_gate_levels": init.config.conditioning.edit_gate_levels})
    state = init.network.state_dict()
    return run_phase(args, "student", config, state, args.truth_minutes, export_config=export)


def split_file(path: Path) -> None:
    """PATH -> PATH.part-00, -01, ... of PART_BYTES each (the device tool returns files of 16 MiB at most)."""
    data = path.read_bytes()
    for i in range(0, len(data), PART_BYTES):
        path.with_name(f"{path.name}.part-{i // PART_BYTES:02d}").write_bytes(data[i : i + PART_BYTES])
    path.unlink()


def main() -> None:
    args = parse_args()
    from facenhance_cli.checkpoint import load_for_inference
    from facenhance_cli.training.distill import teacher_from
    from facenhance_cli.weights import find_model

    args.out.mkdir(parents=True, exist_ok=True)
    init = load_for_inference(find_model(args.init))
    base = init.config.replace(
        **{
            "training.objective": "denoise",
            "sampling.steps": args.teacher_steps,
            "sampling.spacing": "karras",
        }
    )
    batch = largest_batch(base, args.device, args.max_batch)
    settings = {
        "training.batch_size": batch, "training.lr": args.lr or 5e-4, "training.warmup_steps": 100,
        "training.ema_decay": 0.995, "training.max_steps": 10**7, "training.log_every": 20,
        "training.validate_every": 200, "training.checkpoint_every": 10**6, "training.sample_every": 10**7,
    }  # fmt: skip
    teacher_config = base.replace(**settings)
    device = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else args.device
    report = {"batch": batch, "init": str(init.path), "device": device, "recipe": args.recipe}
    if args.recipe == "truth":
        report["truth"] = truth_recipe(args, init, {**settings, "training.lr": args.lr or 2e-4})
        split_file(args.out / "student.pt")
        (args.out / "summary.json").write_text(json.dumps(report, indent=2, default=str))
        print(json.dumps(report, indent=2, default=str))
        return
    report["denoise"] = run_phase(
        args, "teacher", teacher_config, init.network.state_dict(), args.denoise_minutes
    )
    teacher = teacher_from(load_for_inference(args.out / "teacher.pt", args.device))
    student_config, student_state = student_start(args, teacher_config, teacher.network.state_dict())
    report["student_init"] = args.student_init or "the teacher"
    report["distill"] = run_phase(
        args, "student", student_config, student_state, args.distill_minutes, teacher
    )
    for name in ("teacher", "student"):
        split_file(args.out / f"{name}.pt")
    (args.out / "summary.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
