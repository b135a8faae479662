"""Planning an `enhance` run: jobs from the command line's inputs and flags, checked before any model loads."""

from __future__ import annotations

import csv
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from facenhance_cli.config import FacenhanceConfig, Precision, SamplerName, Spacing
from facenhance_cli.errors import InputError, UsageError

VIDEO_OUT_SUFFIXES = {".mp4", ".mkv", ".mov"}  # containers that hold H.264 (and FFV1 for .mkv)


@dataclass(frozen=True)
class EnhanceJob:
    """One video to enhance: low-res input, identity image, output path."""

    low: Path
    identity: Path
    output: Path
    motion: Path | None = None  # a head-motion CSV (--motion, or the pairs file's motion column)


@dataclass
class EnhanceOptions:
    """Sampling and output settings shared by every job of a run."""

    sampler: SamplerName | None = None  # None: the checkpoint's recommended sampler
    steps: int | None = None  # None: the checkpoint's recommended steps
    eta: float | None = None
    strength: float | None = None  # None: the checkpoint's (ddim only)
    spacing: Spacing | None = None  # None: the checkpoint's (ddim only)
    shared_noise: bool | None = None  # None: the checkpoint's: one x_T for every frame of a video
    seed: int = 0
    batch_videos: int = 1
    # Frames of one video per sampler call, for models without the previous frame (whose frames do not
    # depend on each other); a model with it always takes 1. Results depend on it only by float rounding.
    frames_per_call: int = 8
    device: str = "cpu"
    precision: Precision = "fp32"
    backend: str = "torch"  # what runs the network's forward: torch (the reference) or openvino (CPU)
    threads: int | None = None  # CPU threads of the openvino backend (None: torch's count)
    compile: bool = False  # torch backend: torch.compile the network (CUDA graphs on CUDA)
    lossless: bool = False
    save_frames: bool = False
    compare: bool = False
    overwrite: bool = False
    prepare_input: bool = False
    no_motion: bool = False  # keep the head where the identity image has it, even when its motion is known
    strict: bool = False  # a video with a warning fails (nothing written) instead of being enhanced
    weights_dir: Path | None = (
        None  # third-party weights (face detection, landmarks) for identity / --prepare-input
    )


@dataclass
class JobResult:
    """What happened to one job."""

    job: EnhanceJob
    status: str  # done | skipped | failed
    frames: int = 0
    seconds: float = 0.0
    message: str = ""
    warnings: list[str] = field(default_factory=list)  # the output exists but is likely not what was meant
    moved: bool = False  # the head followed a known motion


def output_suffix(lossless: bool) -> str:
    """.mkv (FFV1) for lossless output, else .mp4 (H.264)."""
    return ".mkv" if lossless else ".mp4"


def plan_jobs(
    lows: list[Path],
    identity: Path | None,
    output: Path | None,
    pairs_csv: Path | None,
    lossless: bool,
    motion_file: Path | None = None,
) -> list[EnhanceJob]:
    """Jobs from the command line: one input and a video-file output, or many inputs into a folder, or a CSV.

    `prepare`'s own layout is an input too: a clip folder (or its low.mkv) brings its identity.png and
    names its output by the clip id; the prepared root (manifest.jsonl) stands for all its clips.
    `motion_file` (--motion) is one video's head motion.
    """
    jobs = _planned(lows, identity, output, pairs_csv, lossless)
    if motion_file is None:
        return jobs
    if len(jobs) != 1:
        raise UsageError(
            f"--motion FILE is one video's head motion, not {len(jobs)}'s: use a motion column in --pairs"
        )
    return [dataclasses.replace(jobs[0], motion=motion_file)]


def _planned(
    lows: list[Path], identity: Path | None, output: Path | None, pairs_csv: Path | None, lossless: bool
) -> list[EnhanceJob]:
    suffix = output_suffix(lossless)
    if pairs_csv is not None:
        if lows:
            raise UsageError("give LOW videos or --pairs, not both")
        return read_pairs(pairs_csv, output, suffix, lossless)
    if not lows:
        raise UsageError("no input videos given (LOW... or --pairs FILE.csv)")
    items = [item for low in lows for item in expand_input(low)]
    if not items:
        raise UsageError(f"no prepared clips (folders with low.mkv) in {', '.join(map(str, lows))}")
    if output is None:
        raise UsageError("-o/--output is required (a video file for one input, else a folder)")
    if identity is None and any(own is None for _, own, _ in items):
        raise UsageError(
            "--identity IMG is required (or --pairs FILE.csv with an identity column, "
            "or `prepare` clip folders, which hold identity.png)"
        )
    looks_like_file = bool(output.suffix) and not output.is_dir()
    if looks_like_file:
        check_output_name(output, lossless)
        if len(items) > 1:
            raise UsageError(f"{len(items)} inputs need an output folder, not the file name {output}")
        low, own, _ = items[0]
        return [EnhanceJob(low, identity or own, output)]  # type: ignore[arg-type]
    jobs = [EnhanceJob(low, identity or own, output / f"{name}{suffix}") for low, own, name in items]  # type: ignore[arg-type]
    return check_distinct_outputs(jobs)


PREPARED_LOW, PREPARED_IDENTITY = "low.mkv", "identity.png"


def expand_input(path: Path) -> list[tuple[Path, Path | None, str]]:
    """One command-line input -> (low video, its own identity image or None, output name) items.

    A `prepare` clip folder (or the low.mkv in one) gives its low.mkv and identity.png, named by the clip
    id; the prepared root (manifest.jsonl, clip folders) gives every clip in it; anything else is one video.
    """
    if path.is_dir() and (path / PREPARED_LOW).is_file():
        own = path / PREPARED_IDENTITY
        return [(path / PREPARED_LOW, own if own.is_file() else None, path.name)]
    if path.is_dir() and (path / "manifest.jsonl").is_file():
        clips = sorted(p for p in path.iterdir() if p.is_dir() and (p / PREPARED_LOW).is_file())
        clips = [p for p in clips if not p.name.startswith(".")]  # prepare's temporary folders
        return [item for clip in clips for item in expand_input(clip)]
    if path.name == PREPARED_LOW and (path.parent / PREPARED_IDENTITY).is_file():
        return [(path, path.parent / PREPARED_IDENTITY, path.parent.name)]
    return [(path, None, path.stem if path.is_file() else path.name)]


def check_output_name(output: Path, lossless: bool) -> None:
    """An output file must be a container facenhance writes: .mp4/.mov (H.264) or .mkv (H.264 or FFV1)."""
    suffix = output.suffix.lower()
    if suffix not in VIDEO_OUT_SUFFIXES:
        raise UsageError(f"cannot write {output.name}: use an .mp4, .mov or .mkv output (or a folder)")
    if lossless and suffix != ".mkv":
        raise UsageError(f"--lossless writes FFV1, which needs an .mkv output, not {output.name}")


def check_distinct_outputs(jobs: list[EnhanceJob]) -> list[EnhanceJob]:
    """Refuse two jobs writing the same file."""
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.output in seen:
            raise UsageError(f"{seen[job.output]} and {job.low} would both write {job.output}: use --pairs")
        seen[job.output] = job.low
    return jobs


def read_pairs(path: Path, output_dir: Path | None, suffix: str, lossless: bool = False) -> list[EnhanceJob]:
    """--pairs CSV with columns low, identity, output (output optional; relative paths from the CSV's folder)."""
    if not path.is_file():
        from facenhance_cli.video import not_a_file_message

        raise UsageError(f"--pairs: {not_a_file_message(path, 'CSV')}")
    base = path.parent
    jobs = []
    with open(path, newline="", encoding="utf-8-sig") as f:  # a spreadsheet's "CSV UTF-8" has a BOM
        reader = csv.DictReader(f)
        missing = {"low", "identity"} - set(reader.fieldnames or [])
        if missing:
            raise UsageError(
                f"{path} needs the columns low, identity (and optionally output); missing {sorted(missing)}"
            )
        for line_no, row in enumerate(reader, 2):
            if not row.get("low") or not row.get("identity"):
                raise UsageError(f"{path}:{line_no}: the low and identity columns must not be empty")
            out = row.get("output") or ""
            if not out and output_dir is None:
                raise UsageError(f"{path}:{line_no}: no output column value: give -o OUTDIR or fill it in")
            output = (base / out) if out else output_dir / f"{Path(row['low']).stem}{suffix}"  # type: ignore[operator]
            if out:
                check_output_name(output, lossless)
            motion = base / row["motion"] if (row.get("motion") or "").strip() else None
            jobs.append(EnhanceJob(base / row["low"], base / row["identity"], output, motion))
    if not jobs:
        raise UsageError(f"{path} lists no videos")
    return check_distinct_outputs(jobs)


def compare_path(output: Path) -> Path:
    """Where --compare writes its side-by-side video."""
    return output.with_name(f"{output.stem}_compare{output.suffix}")


def frames_path(output: Path) -> Path:
    """Where --save-frames writes the PNG folder (replaced as a whole)."""
    return output.with_name(f"{output.stem}_frames")


def check_jobs(jobs: list[EnhanceJob], compare: bool = False, save_frames: bool = False) -> None:
    """Before the model loads: no output (or its --compare / --save-frames companion) is an input, every
    input is there and readable, every output folder takes a file. Every flag, every job: inputs are never lost."""
    from facenhance_cli.fileio import check_readable, check_writable, refuse_inputs_as_outputs

    inputs = list(
        dict.fromkeys(p for job in jobs for p in (job.low, job.identity, job.motion) if p is not None)
    )
    outputs = [job.output for job in jobs]
    if compare:
        outputs += [compare_path(job.output) for job in jobs]
    if save_frames:
        outputs += [frames_path(job.output) for job in jobs]
        for job in jobs:  # the frames folder is replaced as a whole: nothing of the inputs may live in it
            folder = frames_path(job.output).resolve()
            for p in inputs:
                if p.resolve().is_relative_to(folder):
                    raise UsageError(
                        f"--save-frames would replace {frames_path(job.output)}, which holds the input {p}"
                    )
    refuse_inputs_as_outputs(outputs, inputs)
    for job in jobs:
        check_readable(job.low, "low video")
    for path in dict.fromkeys(job.identity for job in jobs):
        check_readable(path, "identity image")
        if not path.is_file():  # a folder (or a FIFO): say so, rather than "image not found" later
            from facenhance_cli.video import not_a_file_message

            raise InputError(not_a_file_message(path, "identity image"))
    for folder in dict.fromkeys(job.output.parent for job in jobs):
        check_writable(folder)


def parse_shard(shard: str | None) -> tuple[int, int]:
    """`K/N` -> (K, N); None -> this torchrun rank or (0, 1)."""
    if shard is None:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    try:
        k, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise UsageError(f"--shard expects K/N, e.g. 0/4, got {shard!r}") from None
    if n < 1:
        raise UsageError(f"--shard {shard}: N (the number of shards) must be at least 1")
    if not 0 <= k < n:
        raise UsageError(f"--shard {shard}: K must be in 0..N-1")
    return k, n


def take_shard(jobs: list[EnhanceJob], k: int, n: int) -> list[EnhanceJob]:
    """Every n-th job starting at k: shards split a batch with no coordination."""
    return jobs[k::n]


def default_batch_videos(device: str, gflop_per_call: float) -> int:
    """Videos per network call: 2 on CPU (little to gain beyond), from free memory on CUDA (max 32)."""
    if not device.startswith("cuda"):
        return 2
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    per_video = 0.35e9 * max(
        gflop_per_call / 195.0, 0.05
    )  # ~0.35 GB of activations per video at the paper's size
    return int(max(1, min(32, free * 0.6 // per_video)))


def check_run_flags(options: EnhanceOptions) -> None:
    """The sampling numbers' ranges and the flags that only work together (backend, compile, precision,
    device), checked before any model loads (a model's own config is checked by `config.validate`)."""
    import math

    numbers = {"--eta": (options.eta, 0.0, 1.0), "--strength": (options.strength, 1e-9, 1.0)}
    for flag, (value, low, high) in numbers.items():
        if value is not None and not (math.isfinite(value) and low <= value <= high):
            bounds = "(0, 1]" if flag == "--strength" else "[0, 1]"
            raise UsageError(f"{flag} must be a number in {bounds}, got {value}")
    if options.steps is not None and options.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {options.steps}")
    if options.compile and options.backend != "torch":
        raise UsageError(f"--compile is for the torch backend; {options.backend} compiles its own graph")
    if options.precision == "fp16" and not options.device.startswith("cuda"):
        raise UsageError("--precision fp16 needs a CUDA device (bf16 runs on the CPU too)")


def distilled_steps_warning(
    config: FacenhanceConfig, meta: dict[str, object], steps: int | None
) -> str | None:
    """A warning when --steps asks a distilled student for a step count it was not trained for."""
    trained = config.sampling.steps
    if config.training.objective != "distill" or steps in (None, trained):
        return None
    teacher = f"; its teacher: {meta['distilled_from']}" if meta.get("distilled_from") else ""
    return (
        f"this model was distilled to sample in {trained} step{'s' if trained != 1 else ''}; --steps {steps} "
        f"runs it outside what it learned{teacher}"
    )
