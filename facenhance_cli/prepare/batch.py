"""A `prepare` run: check inputs and output, prepare every clip (in worker processes when asked), then
write the split and the manifest, also on Ctrl-C."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from facenhance_cli.errors import InputError, UsageError, stop_if_signalled
from facenhance_cli.fileio import refuse_file_as_folder
from facenhance_cli.prepare.clip import is_complete, process_clip
from facenhance_cli.prepare.inputs import ClipSource, discover_inputs, parse_segment
from facenhance_cli.prepare.manifest import read_manifest_rows, write_manifest
from facenhance_cli.prepare.options import (
    MANIFEST,
    SPLIT_FILE,
    TMP_PREFIX,
    ClipResult,
    PrepareOptions,
    PrepareReport,
)
from facenhance_cli.prepare.split import read_split, resolve_split, split_problems, write_split


def _worker_init() -> None:
    # One clip per process: keep libraries from each spawning a thread per core. torch (BlazeFace) reads
    # OMP_NUM_THREADS when first imported, so it is not imported here (that alone costs seconds).
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(1)


def _worker(args: tuple[ClipSource, Path, PrepareOptions]) -> ClipResult:
    source, out_dir, options = args
    return process_clip(source, out_dir, options)


def _clean_stale(out_dir: Path) -> None:
    """Remove temporary clip folders left by a killed run (Ctrl-C cleans up its own)."""
    for path in out_dir.glob(f"{TMP_PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def run_prepare(
    inputs: list[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    options: PrepareOptions,
    on_clip: Callable[[ClipResult], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
    on_start: Callable[[list[ClipSource]], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> PrepareReport:
    """Prepare every clip found in `inputs` into out_dir; manifest and split are written even on Ctrl-C."""
    say = log or (lambda message: None)
    out = Path(out_dir)
    sources, input_errors = _plan(inputs, out, options, say)
    if on_start:
        on_start(sources)
    results: list[ClipResult] = []
    split: dict[str, str] = {}
    split_warnings: list[str] = []

    def done(result: ClipResult) -> None:
        results.append(result)
        if on_clip:
            on_clip(result)

    try:
        if options.workers == 1:
            _run_here(sources, out, options, done, on_frame)
        else:
            _run_in_workers(sources, out, options, done)
    finally:
        # The split is drawn over what was prepared (this run and earlier ones), never over clips that
        # failed: a subject whose every clip failed would otherwise take a train (or test) place.
        prepared = _prepared_subjects(out, results)
        split, split_warnings = resolve_split(out, prepared, options)
        if options.split_file:
            write_split(out / SPLIT_FILE, split, options.split, options.seed)
        write_manifest(out, results, split)
    for message in split_warnings:
        say(f"warning: {message}")
    order = {s.clip_id: i for i, s in enumerate(sources)}
    results.sort(key=lambda r: order.get(r.clip_id, 0))
    return PrepareReport(results, input_errors, out, split_problems(split, prepared))


def _plan(
    inputs: list[str | os.PathLike[str]], out: Path, options: PrepareOptions, say: Callable[[str], None]
) -> tuple[list[ClipSource], list[str]]:
    """Check the options, the output folder and the inputs before any work -> clips and input errors."""
    if options.frames < 1:
        raise UsageError("--frames must be at least 1")
    if options.size < 8 or options.low_size < 8:
        raise UsageError("--size and --low-size must be at least 8")
    if options.workers < 1:
        raise UsageError("--workers must be at least 1")
    parse_segment(options.segment, 10**6)  # reject a malformed --segment before any work
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {out} exists and is not a folder")
    refuse_file_as_folder(out)
    check_output_folder(out, inputs)
    sources, input_errors = discover_inputs(inputs, options.layout, options.subject_regex)
    check_sources_outside_clips(out, sources)
    for message in input_errors:
        say(f"skipped {message}")
    if not sources:
        raise InputError("no clips to prepare: " + ("; ".join(input_errors) if input_errors else "no inputs"))
    _check_template(out, options, say)
    out.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    if options.split_file:
        read_split(options.split_file)  # a malformed --split-file fails before any work
    return sources, input_errors


def _check_template(out: Path, options: PrepareOptions, say: Callable[[str], None]) -> None:
    """Warn when the OpenFace PDM is missing; refuse to add clips aligned to another template than OUT's."""
    import json

    from facenhance_cli import faces

    kind = faces.alignment_template(options.weights_dir).source.split(":", 1)[0]
    if kind != "openface-pdm":
        say(
            "warning: the OpenFace PDM (openface_pdm) is not in the weights lookup (--weights-dir, "
            "FACENHANCE_WEIGHTS, the cache): low frames are aligned to CMU OpenFace's template instead, "
            "which models trained on PDM-aligned data do not expect"
        )
    for meta_path in sorted(out.glob("*/meta.json"))[:1] if out.is_dir() else []:
        try:
            theirs = str(json.loads(meta_path.read_text()).get("template", "")).split(":", 1)[0]
        except (OSError, ValueError):
            continue
        if theirs and theirs != kind:
            raise UsageError(
                f"{out} holds clips aligned to the {theirs} template and this run would use {kind}: "
                "give the same weights (--weights-dir / FACENHANCE_WEIGHTS) or another --output"
            )


def _detector(options: PrepareOptions):
    from facenhance_cli import faces

    return faces.default_detector(options.landmarks, options.detector, options.weights_dir, options.device)


def _run_here(
    sources: list[ClipSource],
    out: Path,
    options: PrepareOptions,
    done: Callable[[ClipResult], None],
    on_frame: Callable[[int], None] | None,
) -> None:
    """One clip after the other in this process, with one detector."""
    detector = _detector(options)
    for source in sources:
        stop_if_signalled()  # a SIGTERM that a library swallowed still stops the batch here
        done(process_clip(source, out, options, detector, on_frame))


def _run_in_workers(
    sources: list[ClipSource], out: Path, options: PrepareOptions, done: Callable[[ClipResult], None]
) -> None:
    """options.workers processes, one clip each at a time; a worker that dies fails its clip only."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    _detector(options)  # fail fast on missing weights or bad options before starting the workers
    context = multiprocessing.get_context("spawn")  # fork after torch/av threads start can hang
    with ProcessPoolExecutor(options.workers, mp_context=context, initializer=_worker_init) as pool:
        futures = {pool.submit(_worker, (s, out, options)): s for s in sources}
        try:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except BrokenProcessPool:
                    # A worker died (segfault, out-of-memory kill): that clip fails, the batch goes on.
                    src = futures[future]
                    result = ClipResult(src.clip_id, str(src.path), src.subject, src.expression, "failed")
                    result.reason = "the worker process died (out of memory?)"
                done(result)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def check_output_folder(out: Path, inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse an output folder that is an input or inside an input folder: its clips (high.mkv, low.mkv)
    would be read back as inputs on the next run, and a clip folder could replace an input."""
    target = out.resolve()
    for raw in inputs:
        src = Path(raw).resolve()
        if target == src or (src.is_dir() and target.is_relative_to(src)):
            raise UsageError(
                f"--output {out} is inside the input {raw}: prepared clips would be read back as inputs; "
                "write them elsewhere"
            )


def check_sources_outside_clips(out: Path, sources: list[ClipSource]) -> None:
    """Refuse an input that lives in a clip folder this run writes (OUT/<clip_id>/, replaced as a whole)."""
    for source in sources:
        folder = (out / source.clip_id).resolve()
        for other in sources:
            if other.path.resolve().is_relative_to(folder):
                raise UsageError(
                    f"the input {other.path} is inside {out / source.clip_id}, which prepare writes: "
                    "move it or choose another --output"
                )


def _prepared_subjects(out_dir: Path, results: list[ClipResult]) -> set[str]:
    """Subjects with at least one complete clip: this run's results, then earlier manifest rows."""
    subjects = {r.subject for r in results if r.status == "ok"}
    ran = {r.clip_id for r in results}
    for row in read_manifest_rows(out_dir / MANIFEST).values():
        if (
            row.get("clip_id") not in ran
            and row.get("status") == "ok"
            and is_complete(out_dir / row["clip_id"])
        ):
            subjects.add(str(row["subject"]))
    return subjects
