"""`facenhance eval`: the paper's metrics (PSNR, SSIM, ACD, ACD-I, FVD), ours (lmk, id_match), baselines."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from facenhance_cli.cli.common import Threads, handle_errors, is_terminal

HELP = (
    "Score generated videos against ground truth, beside trivial baselines.\n\n"
    "GEN and --gt take video files, frame folders, `prepare` clip folders (high.mkv is the ground truth, "
    "identity.png the identity, low.mkv the low input) or folders of these; videos pair by file stem or "
    "folder name, or use --pairs FILE.csv (columns gen, gt, identity, low). Pass --gt once per file, a "
    "folder, or a quoted glob ('gt/*.mp4'): an unquoted glob after --gt spills into GEN.\n\n"
    "Metrics: psnr, ssim (per frame, RGB [0, 255]; with psnr, PSNR-U: PSNR over the frames whose ground "
    "truth is not the identity image, the same frames for every method); acd, acd_i, id_match (dlib 128-d face embeddings: "
    "consecutive frames, each frame vs the identity image, fraction under the 0.6 same-person threshold); "
    "fvd (I3D Kinetics-400 logits, Frechet distance to the ground-truth set; meaningless under 10 videos); "
    "lmk (68-landmark error over the inter-ocular distance: all, mouth, eyes); expr (lmk with head pose "
    "removed, computed with lmk).\n\n"
    "Warnings (a metric skipped for missing weights, unpaired videos, too few videos for FVD) always go to "
    "stderr; with --strict they make the exit code 1.\n\n"
    'In --json, infinite PSNR is the string "inf" and a metric not computed is null.'
)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


COLUMNS = (  # report key, header, digits
    ("psnr", "PSNR", 2),
    ("psnr_unseen", "PSNR-U", 2),
    ("ssim", "SSIM", 3),
    ("acd", "ACD", 3),
    ("acd_i", "ACD-I", 3),
    ("fvd", "FVD", 1),
    ("lmk_nme", "LMK", 3),
    ("lmk_nme_mouth", "mouth", 3),
    ("lmk_nme_eyes", "eyes", 3),
    ("expr_nme", "expr", 3),
    ("id_match", "id", 2),
    ("sharpness", "sharp", 2),
)


def render_table(report: dict[str, Any]) -> Any:
    """A rich Table: one row per video (the method), then mean ± std over videos, method and baselines."""
    from rich.table import Table

    s = report["settings"]
    table = Table(
        title=f"facenhance eval: {s['n_videos']} videos, {s['frames']} frames",
        caption="LMK: landmark error / inter-ocular distance; expr: the same with head pose removed; "
        "id: fraction of frames matching the identity; sharp: face detail over the ground truth's. "
        "Lower is better: ACD, ACD-I, FVD, LMK, expr; higher: PSNR, SSIM, id; sharp: 1 is best",
    )
    table.add_column("video", overflow="fold")
    for _, header, _ in COLUMNS:
        table.add_column(header, justify="right")
    for video in report["per_video"]:
        table.add_row(video["name"], *[_fmt(video.get(k), d) if k != "fvd" else "" for k, _, d in COLUMNS])
    table.add_section()
    summaries = {"method": report, **{k: v for k, v in report["baselines"].items() if v["n_videos"]}}
    for name, summary in summaries.items():
        table.add_row(
            f"mean: {name}",
            *[_fmt(summary.get(k), d) for k, _, d in COLUMNS],
            style="bold" if name == "method" else None,
        )
        table.add_row(
            "  ± std",
            *[_fmt(summary["std"].get(k), d) if k != "fvd" else "" for k, _, d in COLUMNS],
            style="dim",
        )
    return table


def _metric_aliases(text: str) -> str:
    """`expr` is computed with `lmk` (the same landmarks, head pose removed): asking for it asks for lmk."""
    names = [n.strip() for n in text.split(",")]
    return ",".join(dict.fromkeys("lmk" if n.lower() == "expr" else n for n in names))


def _refuse_reports_over_inputs(pairs, pairs_csv, json_out, csv_out, sheet) -> None:
    """--json/--csv/--sheet never replace an input (a video, an identity, the pairs file); their folders
    must take a file, checked before any metric is computed."""
    from facenhance_cli.fileio import check_writable, refuse_inputs_as_outputs

    outputs = [Path(p) for p in (json_out if json_out != "-" else None, csv_out, sheet) if p]
    inputs = [p for pair in pairs for p in (pair.gen, pair.gt, pair.identity, pair.low) if p is not None]
    refuse_inputs_as_outputs(outputs, [*([pairs_csv] if pairs_csv else []), *inputs])
    for folder in dict.fromkeys(p.parent for p in outputs):
        check_writable(folder)


SHEET_SUFFIXES = {".png", ".jpg", ".jpeg"}


def _same_file_warnings(pairs: list[Any]) -> list[str]:
    """A pair whose generated video is its ground truth scores PSNR inf: worth a warning, not a number."""
    return [
        f"{pair.name}: the generated video is the ground truth itself ({pair.gt})"
        for pair in pairs
        if Path(pair.gen).resolve() == Path(pair.gt).resolve()
    ]


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("eval", help=HELP)(evaluate)


@handle_errors
def evaluate(
    gen: Annotated[
        list[Path] | None, typer.Argument(help="Generated videos, frame folders or folders of them.")
    ] = None,
    gt: Annotated[
        list[str] | None,
        typer.Option("--gt", help="Ground truth: videos, prepare output folders, quoted globs (repeatable)."),
    ] = None,
    identity: Annotated[
        str | None,
        typer.Option(
            "--identity",
            help="Identity image, or a folder (NAME.png, NAME/identity.png, SUBJECT_neutral.png).",
        ),
    ] = None,
    low: Annotated[
        list[str] | None,
        typer.Option(
            "--low",
            help="Low-resolution inputs, paired by name (for the bicubic baseline and the sheet).",
        ),
    ] = None,
    pairs_csv: Annotated[
        Path | None,
        typer.Option("--pairs", help="CSV with columns gen, gt and optionally identity, low, name."),
    ] = None,
    metrics: Annotated[
        str,
        typer.Option(
            "--metrics", help="Comma list of psnr,ssim,acd,acd_i,fvd,lmk,expr,id_match,sharpness, or all."
        ),
    ] = "all",
    baseline: Annotated[
        str,
        typer.Option(
            "--baseline",
            help="Comma list of identity,bicubic,paste (the low face warped onto the identity image),detail "
            "(the paste keeping the identity's fine detail), or none.",
        ),
    ] = "identity,bicubic,paste,detail",
    json_out: Annotated[
        str | None,
        typer.Option("--json", help="Write the report as JSON to FILE, or to stdout with '-'."),
    ] = None,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="Write per-video and overall rows as CSV.")
    ] = None,
    sheet: Annotated[
        Path | None,
        typer.Option("--sheet", help="Write a contact sheet PNG (low | output | ground truth | baselines)."),
    ] = None,
    fvd_frames: Annotated[
        int,
        typer.Option("--fvd-frames", help="First N frames of each video feed the I3D (FVD convention: 16)."),
    ] = 16,
    sheet_videos: Annotated[
        int, typer.Option("--sheet-videos", help="Videos shown on the contact sheet.")
    ] = 4,
    sheet_frames: Annotated[
        int, typer.Option("--sheet-frames", help="Frames per row on the contact sheet.")
    ] = 4,
    align_truth: Annotated[
        bool,
        typer.Option(
            "--align-truth",
            help="Score against the truth with each frame's head moved onto the identity image's pose "
            "(what a method given aligned low frames can reach); unknown pixels left out. Default: raw truth.",
        ),
    ] = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Feature cache folder (default: the user cache dir)."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the feature cache.")
    ] = False,
    weights_dir: Annotated[
        Path | None, typer.Option("--weights-dir", help="Folder of third-party weights (I3D, dlib).")
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="Device for the I3D: auto, cpu, cuda, cuda:N.")
    ] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips per I3D forward pass.")] = 4,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No table, no progress; notes and warnings still go to stderr."),
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit 1 when there is any warning (a metric skipped, e.g. for missing I3D weights; "
            "unpaired videos); the report is still written.",
        ),
    ] = False,
    threads: Threads = None,
) -> None:
    from facenhance_cli.threads import use_threads

    use_threads(threads)  # first: OpenMP reads its settings when torch loads
    from rich.console import Console

    from facenhance_cli import evaluation as ev
    from facenhance_cli.cli.common import resolve_device
    from facenhance_cli.errors import FacenhanceError, UsageError

    pairs, pair_warnings = _pairs(gen, gt, identity, low, pairs_csv)
    if fvd_frames < 1 or batch_size < 1 or sheet_videos < 1 or sheet_frames < 1:
        raise UsageError("--fvd-frames, --batch-size, --sheet-videos and --sheet-frames must be positive")
    _refuse_reports_over_inputs(pairs, pairs_csv, json_out, csv_out, sheet)
    if sheet is not None and sheet.suffix.lower() not in SHEET_SUFFIXES:
        raise UsageError(f"--sheet writes an image: use a .png or .jpg name, not {sheet.name}")
    options = ev.EvalOptions(
        metrics=ev.parse_names(_metric_aliases(metrics), ev.METRICS, "metric"),
        baselines=ev.parse_names(baseline, ev.BASELINES, "baseline"),
        fvd_frames=fvd_frames,
        i3d_batch=batch_size,
        device=resolve_device(device),
        cache_dir=None if no_cache else (cache_dir or ev.default_cache_dir()),
        weights_dir=weights_dir,
        sheet_videos=sheet_videos,
        sheet_frames=sheet_frames,
        align_truth=align_truth,
    )
    ev.check_pairs(pairs)
    pair_warnings += _same_file_warnings(pairs)
    err = Console(stderr=True)
    result = _evaluate_with_progress(pairs, options, err if is_terminal() and not quiet else None)
    warnings = result.report["warnings"] = [*pair_warnings, *result.warnings]
    for line in [*(f"note: {n}" for n in result.notes), *(f"warning: {w}" for w in warnings)]:
        err.print(line, markup=False, highlight=False, soft_wrap=True)
    if not quiet:
        # With --json -, stdout carries only the JSON: everything for people goes to stderr.
        console = Console(stderr=json_out == "-", width=None if is_terminal() else 160)
        console.print(render_table(result.report))
    _write_reports(result, json_out, csv_out, sheet, None if quiet else err)
    if strict and warnings:
        raise FacenhanceError(f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''} (--strict)")


def _pairs(gen, gt, identity, low, pairs_csv) -> tuple[list[Any], list[str]]:
    """The pairs to score from --pairs, or from GEN, --gt, --identity and --low; and pairing warnings."""
    from facenhance_cli import evaluation as ev
    from facenhance_cli.errors import UsageError

    if pairs_csv is not None:
        if gen or gt or identity or low:
            raise UsageError("--pairs replaces GEN, --gt, --identity and --low: give one or the other")
        return ev.read_pairs_csv(pairs_csv), []
    if not gen:
        raise UsageError("give generated videos (GEN...) and --gt, or --pairs FILE.csv")
    if not gt:
        raise UsageError("--gt is required: the ground-truth videos or prepare output folder")
    return ev.find_pairs(gen, gt, identity, low)


def _evaluate_with_progress(pairs, options, err) -> Any:
    """evaluate(), with a progress bar on `err` (a rich Console) unless it is None."""
    from facenhance_cli import evaluation as ev

    if err is None:
        return ev.evaluate(pairs, options)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("evaluating", total=len(pairs))

        def progress(i: int, n: int, name: str) -> None:
            bar.update(task, completed=i, description=f"evaluating {name}")

        return ev.evaluate(pairs, options, progress)


def _write_reports(result, json_out: str | None, csv_out: Path | None, sheet: Path | None, err) -> None:
    """--json (FILE, or stdout with '-'), --csv and --sheet; each file written is named on `err` unless None."""
    from facenhance_cli import evaluation as ev

    if json_out == "-":
        typer.echo(ev.report_json_text(result.report), nl=False)
    elif json_out:
        ev.write_report_json(json_out, result.report)
    if csv_out:
        ev.write_report_csv(csv_out, result.report)
    if sheet:
        ev.write_contact_sheet(sheet, result)
    for what, path in (("JSON", json_out if json_out != "-" else None), ("CSV", csv_out), ("sheet", sheet)):
        if path and err is not None:
            err.print(f"wrote {what}: {path}", markup=False, highlight=False)
