"""`facenhance prepare`: face videos -> aligned 64x64 faces on black, 192x192 frames, identity images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facenhance_cli.cli.choices import Detector, Landmarks, Layout, LowAlignment
from facenhance_cli.cli.common import handle_errors, is_terminal


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("prepare")(prepare)


@handle_errors
def prepare(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUT...",
            help="Video files, frame folders (one clip each), folders searched recursively, or a MUG root "
            "(<subject>/[<session>/]<expression>/<take>/img_*.jpg). With --identity-only: one photo.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Output folder (one sub-folder per clip); with --identity-only, the image file.",
        ),
    ],
    frames: Annotated[
        int, typer.Option("--frames", "-n", help="Frames per clip, resampled evenly from the segment.")
    ] = 32,
    segment: Annotated[
        str,
        typer.Option(
            "--segment",
            help="Part of each clip to use: first-half (neutral -> apex, the paper's choice), all, "
            "or START:END "
            "frame indices (END exclusive).",
        ),
    ] = "first-half",
    size: Annotated[
        int, typer.Option("--size", help="Side of the high frames and identity image, in pixels.")
    ] = 192,
    low_size: Annotated[
        int, typer.Option("--low-size", help="Side of the aligned low frames (face on black), in pixels.")
    ] = 64,
    layout: Annotated[
        Layout,
        typer.Option(
            "--layout",
            help="How subjects and expressions are read: auto (MUG folders when seen, else flat), mug, flat.",
        ),
    ] = Layout.auto,
    split: Annotated[
        float,
        typer.Option("--split", help="Fraction of subjects in the train split (subject-independent)."),
    ] = 0.75,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the subject split.")] = 0,
    split_file: Annotated[
        Path | None,
        typer.Option(
            "--split-file",
            help="Read the split from this file (JSON as OUT/split.json, or `subject train|test` lines) "
            "instead of drawing one.",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", "-j", help="Clips processed in parallel (processes).")
    ] = 1,
    landmarks: Annotated[
        Landmarks,
        typer.Option(
            "--landmarks",
            help="68-point landmark backend: auto (face-alignment's FAN when its weights are cached locally, "
            "else dlib), face-alignment, dlib.",
        ),
    ] = Landmarks.auto,
    detector: Annotated[
        Detector,
        typer.Option(
            "--detector",
            help="Face detector: auto (dlib HOG, BlazeFace where HOG finds nothing), dlib, blazeface.",
        ),
    ] = Detector.auto,
    device: Annotated[
        str, typer.Option("--device", help="Device for the torch-based detector/landmarks (cpu, cuda).")
    ] = "cpu",
    weights_dir: Annotated[
        Path | None,
        typer.Option(
            "--weights-dir",
            help="Folder with third-party weights (blazeface/, openface-pdm/, dlib/); "
            "overrides FACENHANCE_WEIGHTS.",
        ),
    ] = None,
    subject_regex: Annotated[
        str | None,
        typer.Option(
            "--subject-regex",
            help="Regex on clip names giving the subject id (named group 'subject', else group 1). "
            "Default: a manifest.csv beside the clips, else sub-folders, else the name's prefix before '_'.",
        ),
    ] = None,
    crop_scale: Annotated[
        float,
        typer.Option(
            "--crop-scale",
            help="Side of the square high crop relative to the face size (landmark extent).",
        ),
    ] = 1.8,
    smooth: Annotated[
        float,
        typer.Option("--smooth", help="Gaussian sigma, in frames, smoothing landmarks over time (0: off)."),
    ] = 1.0,
    low_alignment: Annotated[
        LowAlignment,
        typer.Option(
            "--low-alignment",
            help="Low frames: steady (frame 0's alignment moved with the registered head motion, no "
            "landmark jitter) or landmarks (each frame on its own landmarks, as OpenFace and the paper).",
        ),
    ] = LowAlignment.steady,
    max_missing: Annotated[
        float,
        typer.Option(
            "--max-missing", help="Skip a clip when more than this fraction of its frames has no face."
        ),
    ] = 0.5,
    min_face: Annotated[
        float,
        typer.Option("--min-face", help="Skip a clip whose face is smaller than this many source pixels."),
    ] = 40.0,
    preview: Annotated[
        bool,
        typer.Option("--preview/--no-preview", help="Write preview.mp4 (low upscaled | high) per clip."),
    ] = True,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Redo clips whose outputs are already complete (default: skip them)."
        ),
    ] = False,
    identity_only: Annotated[
        bool,
        typer.Option(
            "--identity-only",
            help="Align one photo into a SIZE x SIZE identity image written at --output.",
        ),
    ] = False,
) -> None:
    """Turn face videos into training / evaluation data: high.mkv, low.mkv, identity.png, meta.json."""
    from facenhance_cli.errors import UsageError
    from facenhance_cli.prepare import PrepareOptions

    # Every value is checked, with --identity-only too (it uses --size and --crop-scale).
    options = PrepareOptions(
        frames=frames, segment=segment, size=size, low_size=low_size, layout=layout.value, split=split,
        seed=seed, split_file=str(split_file) if split_file else None, workers=workers,
        landmarks=landmarks.value, detector=detector.value, device=device,
        weights_dir=str(weights_dir) if weights_dir else None, subject_regex=subject_regex,
        crop_scale=crop_scale, smooth=smooth, low_alignment=low_alignment.value, max_missing=max_missing, min_face=min_face,
        preview=preview, overwrite=overwrite,
    ).check()  # fmt: skip
    if identity_only:
        if len(inputs) != 1:
            raise UsageError("--identity-only takes exactly one photo")
        from facenhance_cli.prepare import prepare_identity

        written = prepare_identity(
            inputs[0], output, size, crop_scale, landmarks.value, detector.value,
            str(weights_dir) if weights_dir else None, device,
        )  # fmt: skip
        typer.echo(f"wrote {written}")
        return

    report = _run_with_progress(inputs, output, options)
    _print_summary(report)
    if report.n_ok == 0:
        raise typer.Exit(1)


def _run_with_progress(inputs, output, options):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from facenhance_cli.prepare import run_prepare

    err = Console(stderr=True)

    def log(message: str) -> None:
        err.print(message, markup=False, highlight=False, soft_wrap=True)

    def clip_line(result) -> str:
        if result.status == "ok":
            what = "done earlier" if result.done_earlier else f"prepared ({result.n_frames} frames)"
            note = f" [{'; '.join(result.notes)}]" if result.notes else ""
            warned = "".join(f"\nwarning: {result.clip_id}: {w}" for w in result.warnings)
            return f"{result.clip_id}: {what}{note}{warned}"
        return f"{result.clip_id}: skipped: {result.reason}"

    if not is_terminal():
        return run_prepare(inputs, output, options, on_clip=lambda r: log(clip_line(r)), log=log)

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True,
    ) as progress:  # fmt: skip
        clips_task = progress.add_task("clips", total=None)
        frames_task = progress.add_task("frames", total=None, visible=options.workers == 1)

        def on_start(sources) -> None:
            progress.update(clips_task, total=len(sources))

        def on_frame(n: int) -> None:
            progress.update(frames_task, advance=n)

        def on_clip(result) -> None:
            progress.console.print(clip_line(result), markup=False, highlight=False, soft_wrap=True)
            progress.update(clips_task, advance=1)
            progress.reset(frames_task, total=options.frames)

        progress.reset(frames_task, total=options.frames)
        return run_prepare(inputs, output, options, on_clip, on_frame, on_start, log)


def _print_summary(report) -> None:
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    now = sum(r.status == "ok" and not r.done_earlier for r in report.results)
    earlier = sum(r.done_earlier for r in report.results)
    reasons = Counter(_reason_kind(r.reason) for r in report.results if r.status != "ok")
    table = Table(show_header=True)
    table.add_column("outcome")
    table.add_column("clips", justify="right")
    table.add_row("prepared", str(now))
    if earlier:
        table.add_row("complete already (skipped)", str(earlier))
    if warned := sum(bool(r.warnings) for r in report.results if r.status == "ok"):
        table.add_row("with warnings (see above)", str(warned))
    for reason, count in reasons.most_common():
        table.add_row(f"skipped: {reason}", str(count))
    if report.input_errors:
        table.add_row("inputs not usable", str(len(report.input_errors)))
    console = Console()
    console.print(
        f"prepared data in {report.out_dir} (manifest.jsonl, split.json)", soft_wrap=True, markup=False
    )
    console.print(table)
    for problem in report.split_problems:
        typer.echo(f"warning: {problem}", err=True)
    if report.n_ok == 0:
        typer.echo("error: nothing could be prepared", err=True)


def _reason_kind(reason: str | None) -> str:
    """Group reasons for the summary: the part before any numbers or paths."""
    import re

    text = reason or "unknown"
    return re.split(r"\s\(|:\s|\s\d", text, maxsplit=1)[0]
