"""`facenhance prepare`: face videos -> aligned 64x64 faces on black, 192x192 frames, identity images."""

from __future__ import annotations

from pathlib import Path

import typer

from facenhance_cli.cli.common import handle_errors, is_terminal


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("prepare")
    @handle_errors
    def command(
        inputs: list[Path] = typer.Argument(
            ...,
            metavar="INPUT...",
            help="Video files, frame folders (one clip each), folders searched recursively, or a MUG root "
            "(<subject>/[<session>/]<expression>/<take>/img_*.jpg). With --identity-only: one photo.",
            show_default=False,
        ),
        output: Path = typer.Option(
            ...,
            "--output",
            "-o",
            help="Output folder (one sub-folder per clip); with --identity-only, the image file.",
        ),
        frames: int = typer.Option(
            32, "--frames", "-n", help="Frames per clip, resampled evenly from the segment."
        ),
        segment: str = typer.Option(
            "first-half",
            "--segment",
            help="Part of each clip to use: first-half (neutral -> apex, the paper's choice), all, "
            "or START:END "
            "frame indices (END exclusive).",
        ),
        size: int = typer.Option(
            192, "--size", help="Side of the high frames and identity image, in pixels."
        ),
        low_size: int = typer.Option(
            64, "--low-size", help="Side of the aligned low frames (face on black), in pixels."
        ),
        layout: str = typer.Option(
            "auto",
            "--layout",
            help="How subjects and expressions are read: auto (MUG folders when seen, else flat), mug, flat.",
        ),
        split: float = typer.Option(
            0.75, "--split", help="Fraction of subjects in the train split (subject-independent)."
        ),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of the subject split."),
        split_file: Path | None = typer.Option(
            None,
            "--split-file",
            help="Read the split from this file (JSON as OUT/split.json, or `subject train|test` lines) "
            "instead of drawing one.",
        ),
        workers: int = typer.Option(1, "--workers", "-j", help="Clips processed in parallel (processes)."),
        landmarks: str = typer.Option(
            "auto",
            "--landmarks",
            help="68-point landmark backend: auto (face-alignment's FAN when its weights are cached locally, "
            "else dlib), face-alignment, dlib.",
        ),
        detector: str = typer.Option(
            "auto",
            "--detector",
            help="Face detector: auto (dlib HOG, BlazeFace where HOG finds nothing), dlib, blazeface.",
        ),
        device: str = typer.Option(
            "cpu", "--device", help="Device for the torch-based detector/landmarks (cpu, cuda)."
        ),
        weights_dir: Path | None = typer.Option(
            None,
            "--weights-dir",
            help="Folder with third-party weights (blazeface/, openface-pdm/, dlib/); "
            "overrides FACENHANCE_WEIGHTS.",
        ),
        subject_regex: str | None = typer.Option(
            None,
            "--subject-regex",
            help="Regex on clip names giving the subject id (named group 'subject', else group 1). "
            "Default: a manifest.csv beside the clips, else sub-folders, else the name's prefix before '_'.",
        ),
        crop_scale: float = typer.Option(
            1.8,
            "--crop-scale",
            help="Side of the square high crop relative to the face size (landmark extent).",
        ),
        smooth: float = typer.Option(
            1.0, "--smooth", help="Gaussian sigma, in frames, smoothing landmarks over time (0: off)."
        ),
        max_missing: float = typer.Option(
            0.5, "--max-missing", help="Skip a clip when more than this fraction of its frames has no face."
        ),
        min_face: float = typer.Option(
            40.0, "--min-face", help="Skip a clip whose face is smaller than this many source pixels."
        ),
        preview: bool = typer.Option(
            True, "--preview/--no-preview", help="Write preview.mp4 (low upscaled | high) per clip."
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Redo clips whose outputs are already complete (default: skip them)."
        ),
        identity_only: bool = typer.Option(
            False,
            "--identity-only",
            help="Align one photo into a SIZE x SIZE identity image written at --output.",
        ),
    ) -> None:
        """Turn face videos into training / evaluation data: high.mkv, low.mkv, identity.png, meta.json."""
        from facenhance_cli.errors import UsageError

        if identity_only:
            if len(inputs) != 1:
                raise UsageError("--identity-only takes exactly one photo")
            from facenhance_cli.prepare import prepare_identity

            written = prepare_identity(
                inputs[0], output, size, crop_scale, landmarks, detector,
                str(weights_dir) if weights_dir else None, device,
            )  # fmt: skip
            typer.echo(f"wrote {written}")
            return

        from facenhance_cli.prepare import PrepareOptions

        options = PrepareOptions(
            frames=frames, segment=segment, size=size, low_size=low_size, layout=layout, split=split,
            seed=seed, split_file=str(split_file) if split_file else None, workers=workers,
            landmarks=landmarks, detector=detector, device=device,
            weights_dir=str(weights_dir) if weights_dir else None, subject_regex=subject_regex,
            crop_scale=crop_scale, smooth=smooth, max_missing=max_missing, min_face=min_face,
            preview=preview, overwrite=overwrite,
        )  # fmt: skip
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
            return f"{result.clip_id}: {what}{note}"
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
