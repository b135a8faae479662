"""`facenhance enhance`: the main job."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from facenhance_cli.cli.choices import Backend, Precision, Sampler, Spacing
from facenhance_cli.cli.common import Threads, handle_errors, is_terminal


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("enhance")(enhance)


@handle_errors
def enhance(
    low: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Low-res videos (64x64 face on black; any size is resized), frame folders, `prepare` clip "
            "folders (low.mkv + identity.png, output named by clip id) or a `prepare` output root."
        ),
    ] = None,
    identity: Annotated[
        Path | None,
        typer.Option(
            "--identity",
            "-i",
            help="Required: the neutral identity image (any photo; aligned to 192x192 unless it already is). "
            "Not needed with --pairs or with `prepare` clip folders, which hold identity.png.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Required: the output video (one input) or folder (many inputs). "
            "Not needed with --pairs when every row has an output.",
        ),
    ] = None,
    pairs: Annotated[
        Path | None,
        typer.Option("--pairs", help="CSV with columns low, identity[, output]: one identity per video."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Model name or checkpoint path or run folder (default: the shipped model)."
        ),
    ] = None,
    models_dir: Annotated[
        Path | None,
        typer.Option(
            "--models-dir", help="Extra folder searched first for --model names (also FACENHANCE_MODELS)."
        ),
    ] = None,
    sampler: Annotated[
        Sampler | None, typer.Option("--sampler", help="ddim | ddpm (default: the model's recommendation).")
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps",
            help="DDIM steps (default: the model's). --steps 1000 --eta 0 is the paper's own sampler.",
        ),
    ] = None,
    eta: Annotated[
        float | None, typer.Option("--eta", help="DDIM eta: 0 deterministic, 1 ancestral-like.")
    ] = None,
    strength: Annotated[
        float | None,
        typer.Option(
            "--strength",
            help="DDIM from the noised pasted frame (or identity) at strength x T instead of pure noise "
            "(SDEdit); 1 = from pure noise (default: the model's).",
        ),
    ] = None,
    spacing: Annotated[
        Spacing | None,
        typer.Option(
            "--spacing",
            help="DDIM timesteps: trailing (even in t) or karras (denser at low noise) (default: the model's).",
        ),
    ] = None,
    shared_noise: Annotated[
        bool | None,
        typer.Option(
            "--shared-noise/--per-frame-noise",
            help="Start every frame of a video from the same noise (steady detail) or from its own "
            "(default: the model's).",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Seed; each video's result is the same whatever the batch.")
    ] = 0,
    batch_videos: Annotated[
        int | None,
        typer.Option(
            "--batch-videos",
            "-b",
            help="Videos advanced together per network call (default: from device memory).",
        ),
    ] = None,
    frames_per_call: Annotated[
        int,
        typer.Option(
            "--frames-per-call",
            min=1,
            help="Frames of one video per network call, for models without the previous frame (their "
            "frames are independent; results change only by float rounding).",
        ),
    ] = 8,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="K/N: take every N-th input starting at K (cluster array jobs; automatic under torchrun).",
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
    precision: Annotated[
        Precision | None,
        typer.Option(
            "--precision",
            help="fp32 | bf16 | fp16 (bf16 also on the CPU; fp16 on CUDA). Default (auto): bf16 on a CPU "
            "that computes it natively (AVX512-BF16, AMX), else fp32.",
        ),
    ] = None,
    backend: Annotated[
        Backend,
        typer.Option(
            "--backend",
            envvar="FACENHANCE_BACKEND",
            help="What runs the network: torch (the reference), openvino (CPU; pip install "
            "'facenhance[openvino]'), or auto: openvino on a CPU with native bf16 when installed, else torch.",
        ),
    ] = Backend.auto,
    compile_: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the network (torch backend; CUDA graphs on CUDA). The first call of each "
            "batch shape compiles: seconds on a GPU, minutes on a CPU.",
        ),
    ] = False,
    threads: Threads = None,
    lossless: Annotated[
        bool,
        typer.Option(
            "--lossless", help="Write FFV1 .mkv (bit-exact; what metrics should read) instead of H.264 .mp4."
        ),
    ] = False,
    save_frames: Annotated[
        bool, typer.Option("--save-frames", help="Also write every frame as PNG in OUTPUT_frames/.")
    ] = False,
    compare: Annotated[
        bool, typer.Option("--compare", help="Also write OUTPUT_compare: low upscaled | enhanced | identity.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace existing outputs (default: skip them, so reruns resume)."),
    ] = False,
    prepare_input: Annotated[
        bool,
        typer.Option(
            "--prepare-input",
            help="Input is a real video: align the face on black with prepare's pipeline first (and follow "
            "its head's motion).",
        ),
    ] = False,
    motion: Annotated[
        Path | None,
        typer.Option(
            "--motion",
            help="A head-motion CSV for the one input (frame,scale,rotation_deg,tx,ty per frame; prepare "
            "writes motion.csv in each clip folder, which is used by default).",
        ),
    ] = None,
    no_motion: Annotated[
        bool,
        typer.Option(
            "--no-motion",
            help="Keep the head where the identity image has it, even when its motion is known.",
        ),
    ] = False,
    weights_dir: Annotated[
        Path | None,
        typer.Option(
            "--weights-dir",
            help="Folder of third-party weights (face detection and landmarks); else FACENHANCE_WEIGHTS.",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Treat warnings (blank, grey or noise video, still image, identity grey or not matching, "
            "a prepared clip short of frames, an empty existing output, the fallback alignment template, a "
            "missing models folder) as errors: that video fails, nothing is written for it, exit 1.",
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only errors, warnings and the summary line.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Print notes and per-video results even when not a terminal."),
    ] = False,
) -> None:
    """Enhance low-res facial-expression videos to 192x192 with the identity image's background, hair and clothes.

    Frame count and fps are kept; audio is passed through. Outputs are written to a temporary file and
    renamed, so an interrupted batch resumes by rerunning the same command (existing outputs are skipped).
    """
    from facenhance_cli.threads import use_threads

    thread_plan = use_threads(threads)  # first: OpenMP reads its settings when torch loads
    from facenhance_cli.accel import slow_bf16_warning
    from facenhance_cli.backends import resolve_backend, resolve_precision
    from facenhance_cli.checkpoint import load_for_inference
    from facenhance_cli.cli.common import resolve_device
    from facenhance_cli.enhance import EnhanceOptions, check_run_flags
    from facenhance_cli.enhance.planning import distilled_steps_warning
    from facenhance_cli.errors import InputError

    jobs = _planned_jobs(low, identity, output, pairs, motion, lossless, shard, batch_videos)
    _check_outputs_and_motion(jobs, compare, save_frames, no_motion)
    device_name = resolve_device(device)
    auto_backend = "torch" if compile_ and backend.value == "auto" else backend.value
    backend_name = resolve_backend(auto_backend, device_name)
    precision_name = resolve_precision(precision.value if precision else None, backend_name, device_name)
    options = EnhanceOptions(
        sampler=sampler.value if sampler else None,
        steps=steps,
        eta=eta,
        strength=strength,
        spacing=spacing.value if spacing else None,
        shared_noise=shared_noise,
        seed=seed,
        batch_videos=batch_videos or 1,
        frames_per_call=frames_per_call,
        device=device_name,
        precision=precision_name,
        backend=backend_name,
        compile=compile_,
        threads=thread_plan.threads,
        lossless=lossless,
        save_frames=save_frames,
        compare=compare,
        overwrite=overwrite,
        prepare_input=prepare_input,
        no_motion=no_motion,
        strict=strict,
        weights_dir=weights_dir,
    )
    check_run_flags(options)  # before the model loads
    loaded = load_for_inference(_model_path(model, models_dir, strict), device_name)
    if warning := distilled_steps_warning(loaded.config, loaded.meta, steps):
        typer.echo(f"warning: {warning}", err=True)
        if strict:
            raise InputError(f"{warning} (--strict)")
    if batch_videos is None:
        options.batch_videos = _default_batch_videos(loaded.config, device_name)
    show_progress = is_terminal() and not quiet
    if backend_name == "torch" and (warning := slow_bf16_warning(precision_name, device_name)):
        typer.echo(f"warning: {warning}", err=True)  # before the work it slows down
    started = time.perf_counter()
    results, notes = _run(jobs, loaded, options, show_progress)
    wall_seconds = time.perf_counter() - started  # videos share network calls: their own times overlap
    notes.insert(0, f"network on {backend_name} in {precision_name}, {thread_plan.threads} CPU threads")
    if thread_plan.note:
        notes.insert(1, thread_plan.note)
    talk = (verbose or is_terminal()) and not quiet
    _print_results(results, notes, len(jobs), output, talk, wall_seconds)


def _model_path(model: str | None, models_dir: Path | None, strict: bool) -> Path:
    """The model file, with a warning for a --models-dir or FACENHANCE_MODELS folder that is not there."""
    from facenhance_cli.errors import InputError
    from facenhance_cli.weights import find_model

    model_warnings: list[str] = []
    path = find_model(model, models_dir, model_warnings.append)
    for line in model_warnings:
        typer.echo(f"warning: {line}", err=True)
    if strict and model_warnings:
        raise InputError(f"{model_warnings[0]} (--strict)")
    return path


def _planned_jobs(
    low: list[Path] | None,
    identity: Path | None,
    output: Path | None,
    pairs: Path | None,
    motion: Path | None,
    lossless: bool,
    shard: str | None,
    batch_videos: int | None,
) -> list:
    """This shard's jobs from the inputs and flags."""
    from facenhance_cli.enhance import parse_shard, plan_jobs, take_shard
    from facenhance_cli.errors import UsageError

    if batch_videos is not None and batch_videos < 1:
        raise UsageError("--batch-videos must be at least 1")
    jobs = plan_jobs(list(low or []), identity, output, pairs, lossless, motion)
    return take_shard(jobs, *parse_shard(shard))


def _check_outputs_and_motion(jobs: list, compare: bool, save_frames: bool, no_motion: bool) -> None:
    """Before the model loads: inputs safe and readable, outputs writable, motion files right."""
    from facenhance_cli.enhance import check_jobs
    from facenhance_cli.enhance.motion import check_motion_files

    check_jobs(jobs, compare, save_frames)
    check_motion_files(jobs, no_motion)


def _default_batch_videos(config, device: str) -> int:
    """Videos per network call when -b is not given (no cost count on the CPU: it imports sympy)."""
    from facenhance_cli.enhance import default_batch_videos

    if not device.startswith("cuda"):
        return default_batch_videos(device, 0.0)
    from facenhance_cli.costs import measure_cost

    return default_batch_videos(device, measure_cost(config).gflop_per_call)


def _print_results(
    results, notes: list[str], n_jobs: int, output: Path | None, talk: bool, wall_seconds: float
) -> None:
    """Notes (when talking), every warning and error, skips, then the summary line (frames and the run's
    wall time); exit 1 on failures."""
    from facenhance_cli.errors import FacenhanceError

    done = [r for r in results if r.status == "done"]
    skipped = [r for r in results if r.status == "skipped"]
    failed = [r for r in results if r.status == "failed"]
    n_warnings = sum(len(r.warnings) for r in results)
    one = n_jobs == 1
    if talk:
        for note in notes:
            typer.echo(f"note: {note}", err=True)
    for r in results:  # warnings always reach stderr: a script must not get garbage with exit 0 silently
        for warning in r.warnings:
            typer.echo(f"warning: {warning}", err=True)
    for r in failed:
        where = "" if one else f"{r.job.low}: "
        typer.echo(f"error: {where}{r.message}", err=True)
    if talk or one:
        for r in skipped:
            typer.echo(f"skipped: {r.job.output} exists (use --overwrite)", err=True)
    frames = sum(r.frames for r in done)
    seconds = wall_seconds
    warned = f", {n_warnings} warning{'s' if n_warnings != 1 else ''}" if n_warnings else ""
    moved = [r for r in done if r.moved]
    if talk and not one:
        for r in moved:
            typer.echo(f"moved: {r.job.output} (the head follows its motion)", err=True)
    if one:
        if done:
            head = ", head moved" if moved else ""
            typer.echo(
                f"wrote {done[0].job.output} ({frames} frames, {seconds:.1f} s{head}{warned})", err=True
            )
    else:  # the one line a batch script reads: every video is counted once
        where = f" -> {output}" if output is not None else ""
        typer.echo(
            f"{len(done)} enhanced, {len(skipped)} skipped, {n_warnings} warnings, {len(failed)} failed, "
            f"{len(moved)} moved ({frames} frames in {seconds:.1f} s){where}",
            err=True,
        )
    if failed:
        if one:
            raise typer.Exit(1)
        raise FacenhanceError(f"{len(failed)} of {n_jobs} videos failed")


def _run(jobs, loaded, options, show_progress: bool):
    from facenhance_cli.enhance import Reporter, enhance_videos

    reporter = Reporter()
    if not show_progress:
        return enhance_videos(jobs, loaded, options, reporter), reporter.notes
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        transient=False,
    ) as progress:
        videos = progress.add_task("videos", total=len(jobs), info="")
        frames = progress.add_task("frames", total=0, info="")
        steps = progress.add_task("denoise", total=1, info="")
        import time

        start = time.perf_counter()
        done_frames = [0]

        def on_job_start(job, n_frames):
            progress.update(frames, total=(progress.tasks[frames].total or 0) + n_frames)

        def on_progress(i, n):
            progress.update(steps, completed=i, total=n)

        def on_frame(batch_jobs, count):
            done_frames[0] += count
            rate = done_frames[0] / (time.perf_counter() - start)
            progress.update(frames, advance=count, info=f"{rate:.2f} frames/s  {batch_jobs[0].low.name}")

        def on_job_end(result):
            progress.advance(videos)

        reporter = Reporter(on_job_start, on_frame, on_progress, on_job_end)
        return enhance_videos(jobs, loaded, options, reporter), reporter.notes
