"""`facenhance enhance`: low-res face videos + identity images -> 192x192 videos (Algorithm 3), in batches.

Videos advance together: frame n of up to B videos goes through one network call per denoising step.
Frames are streamed in and out (only the previous generated frame is kept per video), outputs are
written to temporary files and renamed, and a failing video is reported while the others go on.
"""

from __future__ import annotations

import csv
import os
import shutil
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from facenhance_cli.config import Precision, SamplerName, Spacing
from facenhance_cli.errors import InputError, UsageError, one_line
from facenhance_cli.fileio import temp_path_for

VIDEO_OUT_SUFFIXES = {".mp4", ".mkv", ".mov"}  # containers that hold H.264 (and FFV1 for .mkv)


@dataclass(frozen=True)
class EnhanceJob:
    """One video to enhance: low-res input, identity image, output path."""

    low: Path
    identity: Path
    output: Path


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


@dataclass
class Reporter:
    """Progress hooks; the CLI turns them into rich bars. All optional."""

    on_job_start: Callable[[EnhanceJob, int], None] | None = None  # (job, n_frames or 0)
    on_frame: Callable[[list[EnhanceJob], int], None] | None = None  # after each frame step of a batch
    on_step: Callable[[int, int], None] | None = None  # denoising step i of n of the current frame
    on_job_end: Callable[[JobResult], None] | None = None
    notes: list[str] = field(default_factory=list)


# -- planning --------------------------------------------------------------------------------------------


def output_suffix(lossless: bool) -> str:
    """.mkv (FFV1) for lossless output, else .mp4 (H.264)."""
    return ".mkv" if lossless else ".mp4"


def plan_jobs(
    lows: list[Path],
    identity: Path | None,
    output: Path | None,
    pairs_csv: Path | None,
    lossless: bool,
) -> list[EnhanceJob]:
    """Jobs from the command line: one input and a video-file output, or many inputs into a folder, or a CSV.

    `prepare`'s own layout is an input too: a clip folder (or its low.mkv) brings its identity.png and
    names its output by the clip id; the prepared root (manifest.jsonl) stands for all its clips.
    """
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
        raise UsageError(f"--pairs file not found: {path}")
    base = path.parent
    jobs = []
    with open(path, newline="") as f:
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
            jobs.append(EnhanceJob(base / row["low"], base / row["identity"], output))
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
    input is there and readable, every output folder takes a file. Any flag, any job: inputs are never lost."""
    from facenhance_cli.fileio import check_readable, check_writable, refuse_inputs_as_outputs

    inputs = list(dict.fromkeys(p for job in jobs for p in (job.low, job.identity)))
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
    if not 0 <= k < n:
        raise UsageError(f"--shard {shard}: K must be in 0..N-1")
    return k, n


def take_shard(jobs: list[EnhanceJob], k: int, n: int) -> list[EnhanceJob]:
    """Every n-th job starting at k: shards split a batch with no coordination."""
    return jobs[k::n]


# -- inputs ----------------------------------------------------------------------------------------------


def load_identity(path: Path, size: int, weights_dir: Path | None = None) -> tuple[np.ndarray, str | None]:
    """The identity image at size x size: used as is when already that size, else aligned like prepare does."""
    from facenhance_cli.video import read_image

    image = read_image(path)
    if image.shape[0] == size and image.shape[1] == size:
        return image, None
    from facenhance_cli.faces import align_identity, default_detector

    aligned = align_identity(image, size=size, detector=default_detector(weights_dir=weights_dir))
    return aligned, f"{path.name}: {image.shape[1]}x{image.shape[0]} photo aligned to {size}x{size}"


def low_frame_stream(
    path: Path, low_size: int, prepare_input: bool, weights_dir: Path | None = None
) -> tuple[Generator[np.ndarray, None, None], str | None]:
    """Low frames at low_size x low_size: resized when needed, or run through prepare's alignment first."""
    import cv2

    from facenhance_cli.video import iter_frames, probe_video

    info = probe_video(path)
    if prepare_input:
        aligned = prepared_low_frames(path, low_size, weights_dir)
        return (frame for frame in aligned), f"{path.name}: faces aligned with prepare's low pipeline"
    note = None
    if (info.width, info.height) != (low_size, low_size):
        note = f"{path.name}: {info.width}x{info.height} frames resized to {low_size}x{low_size}"

    def frames() -> Generator[np.ndarray, None, None]:
        for frame in iter_frames(path):
            if frame.shape[:2] != (low_size, low_size):
                frame = cv2.resize(frame, (low_size, low_size), interpolation=cv2.INTER_AREA)
            yield frame

    return frames(), note


def prepared_low_frames(path: Path, low_size: int, weights_dir: Path | None = None) -> list[np.ndarray]:
    """A real (not black-background) video -> OpenFace-style aligned faces on black, as `prepare` makes them."""
    from facenhance_cli import faces
    from facenhance_cli.video import iter_frames

    frames = list(iter_frames(path))
    landmarks = faces.track_landmarks(frames, faces.default_detector(weights_dir=weights_dir)).landmarks
    template = faces.alignment_template(weights_dir)
    return [
        faces.align_face(f, lm, template, low_size).image for f, lm in zip(frames, landmarks, strict=True)
    ]


def to_model(images: list[np.ndarray], device: str) -> torch.Tensor:
    """uint8 (H,W,3) images -> (B,3,H,W) float32 in [-1, 1] on `device`."""
    from facenhance_cli.accel import to_device
    from facenhance_cli.data import to_tensor

    return to_device(to_tensor(images), device)


def display_name(path: Path) -> str:
    """A short name for messages: the file name, with its clip folder for prepare's low.mkv files."""
    return f"{path.parent.name}/{path.name}" if path.name == PREPARED_LOW else path.name


def low_video_warnings(path: Path, n_frames: int, first: np.ndarray, prepared: bool) -> list[str]:
    """What makes a low video likely garbage in, from its first (low_size, low_size, 3) uint8 frame.

    A `prepare`-style low frame is a colour face on black: a still image, a flat frame, a grey one or one
    without a black surround (noise, a real video not run through --prepare-input) is worth a warning.
    """
    from facenhance_cli.video import IMAGE_SUFFIXES

    label = display_name(path)
    out = []
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        out.append(f"{label} is a still image, not a video (one frame)")
    elif n_frames == 1:
        out.append(f"{label} has a single frame")
    frame = first.astype(np.int16)
    if frame.std() < 3:
        out.append(f"{label}: the first frame is flat (value {int(frame.mean())}): a blank video?")
        return out
    if np.abs(frame - frame[..., :1]).max() <= 2:
        out.append(f"{label} is grayscale: the model expects colour faces")
    # Aligned low faces leave the corners outside the landmark hull black: about a fifth of the frame
    # on prepared clips, three quarters on small faces. Noise has almost no black pixel (0.07 %).
    if not prepared and (frame.max(axis=2) < 24).mean() < 0.05:
        out.append(
            f"{label} does not look like a face on black (as `prepare` makes): "
            "use --prepare-input for a real video"
        )
    return out


def identity_warnings(path: Path, image: np.ndarray) -> list[str]:
    """A blank identity image is worth a warning (a face-less one shows in the paste match)."""
    if image.astype(np.float32).std() < 3:
        return [f"identity image {path.name} is flat (value {int(image.mean())}): no face to copy"]
    return []


# -- the batched loop ------------------------------------------------------------------------------------


def default_batch_videos(device: str, gflop_per_call: float) -> int:
    """Videos per network call: 2 on CPU (little to gain beyond), from free memory on CUDA (max 32)."""
    if not device.startswith("cuda"):
        return 2
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    per_video = 0.35e9 * max(
        gflop_per_call / 195.0, 0.05
    )  # ~0.35 GB of activations per video at the paper's size
    return int(max(1, min(32, free * 0.6 // per_video)))


def enhance_videos(
    jobs: list[EnhanceJob],
    model: Any,
    options: EnhanceOptions,
    reporter: Reporter | None = None,
) -> list[JobResult]:
    """Run Algorithm 3 over many videos, B at a time; returns one result per job (done, skipped or failed).

    Frame n of up to `batch_videos` videos goes through one sampler call. A video joins the batch when
    another leaves it, so each row carries its own frame index; its noise depends on (seed, frame) only,
    never on the other videos in the batch.
    """
    sampling = _make_sampling(model, options)
    run = _Run(model.config, options, reporter or Reporter())
    pending, active = list(jobs), list[_Video]()
    try:
        while pending or active:
            while pending and len(active) < options.batch_videos:
                video = run.start(pending.pop(0))
                if video is not None:
                    active.append(video)
            if active:
                active = _step(active, sampling, run)
    except BaseException as exc:  # Ctrl-C or a crash: no partial outputs left behind
        for video in active:
            video.abort(exc)
        raise
    return run.results


@dataclass(frozen=True)
class _Sampling:
    """What draws frame n of a batch of videos: denoiser, sampler, schedule and the sampler's options."""

    denoiser: Any
    sampler: Any
    schedule: Any
    sampler_options: dict[str, Any]
    shared_noise: bool
    prev_noise: Any  # ConditioningConfig

    def frame(self, cond: Any, seed: int, frame_indices: list[int], on_step: Any) -> torch.Tensor:
        """One step of Algorithm 3 for each row of `cond`: frame n (B, 3, S, S) in [-1, 1]."""
        from facenhance_cli.diffusion import recurrent

        return recurrent.generate_frame(
            self.denoiser,
            self.sampler,
            self.schedule,
            cond,
            seeds=[seed] * len(frame_indices),
            frame_indices=frame_indices,
            prev_noise=self.prev_noise,
            sampler_options=self.sampler_options,
            on_step=on_step,
            shared_noise=self.shared_noise,
        )


def _make_sampling(model: Any, options: EnhanceOptions) -> _Sampling:
    """The run's sampler: the checkpoint's settings with the command line's on top, checked before any work."""
    from facenhance_cli.diffusion.denoiser import make_denoiser
    from facenhance_cli.diffusion.samplers import get_sampler
    from facenhance_cli.diffusion.schedule import make_schedule

    config = model.config
    T = config.diffusion.num_timesteps
    if (options.sampler or config.sampling.sampler) == "ddpm":
        if options.steps not in (None, T):
            raise UsageError(f"--sampler ddpm always runs all {T} steps; use ddim for fewer")
        if options.eta is not None or options.strength is not None or options.spacing is not None:
            raise UsageError(
                "--eta, --strength and --spacing apply to the ddim sampler only (ddpm is ancestral)"
            )
    flags: dict[str, Any] = {"sampler": options.sampler, "steps": options.steps, "eta": options.eta}
    flags.update(strength=options.strength, spacing=options.spacing, shared_noise=options.shared_noise)
    sampling = config.with_overrides(
        {f"sampling.{key}": value for key, value in flags.items()},
        names={f"sampling.{key}": f"--{key.replace('_', '-')}" for key in flags},
    ).sampling
    network, autocast = _forward_pass(model, options)
    schedule = make_schedule(config.diffusion)
    denoiser = make_denoiser(network, config, schedule, autocast)
    sampler_options: dict[str, Any] = {}
    if sampling.sampler == "ddim":
        sampler_options = dict(
            steps=sampling.steps, eta=sampling.eta, strength=sampling.strength, spacing=sampling.spacing
        )
    sampler = get_sampler(sampling.sampler)
    return _Sampling(denoiser, sampler, schedule, sampler_options, sampling.shared_noise, config.conditioning)


def _forward_pass(model: Any, options: EnhanceOptions) -> tuple[Any, torch.dtype | None]:
    """The network's forward on the chosen backend, and the autocast dtype torch runs it in."""
    from facenhance_cli.accel import compile_network, configure_cuda_math
    from facenhance_cli.backends import make_network

    configure_cuda_math(options.device)
    if options.precision == "fp16" and not options.device.startswith("cuda"):
        raise UsageError("--precision fp16 needs a CUDA device (bf16 runs on the CPU too)")
    if options.compile and options.backend != "torch":
        raise UsageError(f"--compile is for the torch backend; {options.backend} compiles its own graph")
    if options.backend != "torch":  # the backend computes in `precision` itself
        threads = options.threads or torch.get_num_threads()
        return make_network(model.network, model.config, options.backend, options.precision, threads), None
    autocast = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[options.precision]
    network = compile_network(model.network, options.device) if options.compile else model.network
    return network, autocast


def _step(active: list[_Video], sampling: _Sampling, run: _Run) -> list[_Video]:
    """The next frames of every active video in one sampler call (frame n, or frames n..n+k-1 of models
    without the previous frame); returns the videos that have frames left."""
    from facenhance_cli.data import to_uint8

    per_video = 1 if run.config.unet.use_prev_frame else max(1, run.options.frames_per_call)
    rows = [(v, j, low) for v in active for j, low in enumerate(v.upcoming(per_video))]
    videos, lows = [v for v, _, _ in rows], [low for _, _, low in rows]
    cond = _conditioning(videos, lows, run.config, run.options.device)
    indices = [v.n + j for v, j, _ in rows]
    frame = sampling.frame(cond, run.options.seed, indices, run.reporter.on_step)  # (rows, 3, S, S)
    out_uint8 = to_uint8(frame)
    failed: set[int] = set()
    for i, video in enumerate(videos):
        if id(video) in failed:
            continue
        try:
            video.advance(out_uint8[i], frame[i : i + 1])
        except Exception as exc:  # e.g. a container that refuses the audio codec
            failed.add(id(video))
            run.report(video.close(exc))
    still_active = []
    for video in active:
        if id(video) in failed:
            continue
        if video.low is None:
            run.report(video.close(None))
        else:
            still_active.append(video)
    if run.reporter.on_frame:
        run.reporter.on_frame([v.job for v in videos], len(videos))
    return still_active


@dataclass
class _Run:
    """One enhance run's shared state: the model's config, the options, progress hooks, results so far."""

    config: Any
    options: EnhanceOptions
    reporter: Reporter
    results: list[JobResult] = field(default_factory=list)
    identities: dict[Path, tuple[np.ndarray, str | None]] = field(default_factory=dict)

    def report(self, result: JobResult) -> None:
        """Record one job's result and tell the reporter."""
        self.results.append(result)
        if self.reporter.on_job_end:
            self.reporter.on_job_end(result)

    def start(self, job: EnhanceJob) -> _Video | None:
        """Open a job for the batch, or report it skipped (output exists) or failed (a bad input)."""
        if job.output.exists() and not self.options.overwrite:
            self.report(JobResult(job, "skipped", message="output exists (use --overwrite)"))
            return None
        try:
            video = _open_video(job, self)
            if self.reporter.on_job_start:
                self.reporter.on_job_start(job, video.n_frames)
        except Exception as exc:  # one bad video never stops the batch (PyAV raises ValueErrors too)
            self.report(JobResult(job, "failed", message=one_line(exc)))
            return None
        return video

    def identity_image(self, path: Path) -> np.ndarray:
        """The identity image at the model's size, loaded (and aligned, with a note) once per path."""
        if path not in self.identities:
            self.identities[path] = load_identity(path, self.config.unet.image_size, self.options.weights_dir)
        image, note = self.identities[path]
        if note and note not in self.reporter.notes:
            self.reporter.notes.append(note)
        return image


@dataclass
class _Video:
    """One video in the batch; `stack` holds its low-frame reader and its writers (and frames folder)."""

    job: EnhanceJob
    stack: ExitStack
    frames: Iterator[np.ndarray]
    writers: list[Any]  # the output video, then the --compare video when asked for
    frames_dir: Path | None  # --save-frames: the temporary PNG folder, renamed when the video is done
    identity_uint8: np.ndarray  # (S, S, 3)
    identity: torch.Tensor  # (1, 3, S, S)
    prev: torch.Tensor  # (1, 3, S, S): the identity image for frame 0, then generated frame n-1
    low: np.ndarray | None  # frame n's low frame; None once the video has no more
    paste_matrix: np.ndarray | None  # low px -> identity px, for models that use the pasted frame
    warnings: list[str]
    n_frames: int  # from the container header (0 when unknown)
    started: float = field(default_factory=time.perf_counter)
    n: int = 0
    ahead: list[np.ndarray] = field(default_factory=list)  # low frames read past frame n (upcoming)

    def upcoming(self, k: int) -> list[np.ndarray]:
        """Low frames n..n+k-1 (fewer at the end), read ahead; advance() consumes them in order."""
        while len(self.ahead) < k - 1:
            following = next(self.frames, None)
            if following is None:
                break
            self.ahead.append(following)
        assert self.low is not None  # videos whose frames ran out were finished
        return [self.low, *self.ahead[: k - 1]]

    def advance(self, frame_uint8: np.ndarray, frame: torch.Tensor) -> None:
        """Write generated frame n (S, S, 3), keep it (1, 3, S, S) for frame n+1, read low frame n+1."""
        from facenhance_cli.video import write_image

        assert self.low is not None
        self.writers[0].write(frame_uint8)
        if len(self.writers) > 1:
            import cv2

            size = self.identity_uint8.shape[1::-1]
            low_up = cv2.resize(self.low, size, interpolation=cv2.INTER_CUBIC)
            self.writers[1].write(np.concatenate([low_up, frame_uint8, self.identity_uint8], axis=1))
        if self.frames_dir is not None:
            write_image(self.frames_dir / f"frame_{self.n:05d}.png", frame_uint8)
        self.prev = frame
        self.n += 1
        self.low = self.ahead.pop(0) if self.ahead else next(self.frames, None)

    def close(self, error: BaseException | None) -> JobResult:
        """Close reader and writers (after `error`, deleting what they wrote) -> this video's result."""
        try:
            if error is None:
                self.stack.close()
            else:
                self.stack.__exit__(type(error), error, error.__traceback__)
        except Exception as exc:  # a failed close (trailer, disk full) fails this video only
            error = error or exc
        seconds = time.perf_counter() - self.started
        if error is None:
            return JobResult(self.job, "done", self.n, seconds, warnings=self.warnings)
        return JobResult(self.job, "failed", self.n, seconds, one_line(error))

    def abort(self, error: BaseException) -> None:
        """Interrupted: delete every output of this video, whatever else goes wrong."""
        try:
            self.stack.__exit__(type(error), error, error.__traceback__)
        except BaseException:
            pass


def _open_video(job: EnhanceJob, run: _Run) -> _Video:
    """Check one job's inputs and open its reader and writers in one ExitStack (closed again on any error)."""
    from facenhance_cli.video import VideoWriter, probe_video

    options = run.options
    with ExitStack() as stack:
        identity_uint8 = run.identity_image(job.identity)
        info = probe_video(job.low)
        low_size = run.config.encoder.low_size
        frames, note = low_frame_stream(job.low, low_size, options.prepare_input, options.weights_dir)
        stack.callback(frames.close)
        if note:
            run.reporter.notes.append(note)
        first = next(frames, None)
        if first is None:
            raise InputError(f"{job.low}: no frames")
        warnings, paste_matrix = _input_warnings(job, info.n_frames, identity_uint8, first, run)
        if options.strict and warnings:
            raise InputError(f"{warnings[0]} (--strict)")
        frames_dir = None
        if options.save_frames:  # written under a temporary name, renamed when the video is done
            frames_dir = temp_path_for(frames_path(job.output))
            frames_dir.mkdir(parents=True)
            stack.push(_frames_dir_exit(frames_dir, frames_path(job.output)))
        audio_from = job.low if info.has_audio else None
        writers = [stack.enter_context(VideoWriter(job.output, info.fps, options.lossless, audio_from))]
        if options.compare:
            compare = VideoWriter(compare_path(job.output), info.fps, lossless=options.lossless)
            writers.append(stack.enter_context(compare))
        identity = to_model([identity_uint8], options.device)
        return _Video(
            job,
            stack.pop_all(),
            frames,
            writers,
            frames_dir,
            identity_uint8=identity_uint8,
            identity=identity,
            prev=identity,
            low=first,
            paste_matrix=paste_matrix,
            warnings=warnings,
            n_frames=info.n_frames,
        )


def _input_warnings(
    job: EnhanceJob, n_frames: int, identity_uint8: np.ndarray, first: np.ndarray, run: _Run
) -> tuple[list[str], np.ndarray | None]:
    """The job's warnings, and for pasted-frame models where the first low frame's face sits in the identity."""
    warnings = identity_warnings(job.identity, identity_uint8)
    warnings += low_video_warnings(job.low, n_frames, first, run.options.prepare_input)
    if not run.config.unet.use_pasted_frame:
        return warnings, None
    from facenhance_cli.pasting import MIN_SCORE, locate_low_face

    paste_matrix, score = locate_low_face(identity_uint8, first)
    if score < MIN_SCORE:
        warnings.append(
            f"{display_name(job.low)}: its first frame's face was not found in the identity image "
            f"(match {score:.2f}); is it the same person, cropped like `prepare` does?"
        )
    return warnings, paste_matrix


def _frames_dir_exit(tmp: Path, final: Path) -> Callable[..., bool]:
    """An exit callback: rename the temporary PNG folder to `final` on success, delete it otherwise."""

    def exit_(exc_type: Any, exc: Any, tb: Any) -> bool:
        if not tmp.exists():
            return False
        if exc_type is None:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        return False

    return exit_


def _conditioning(active: list[_Video], lows: list[np.ndarray], config: Any, device: str) -> Any:
    """Frame n's Conditioning for the active videos: low frames, identity, clean previous frames, and the
    pasted frame and edit mask for models that use them."""
    from facenhance_cli.accel import to_device
    from facenhance_cli.conditioning import Conditioning
    from facenhance_cli.data import to_mask_tensor

    cond = Conditioning(
        identity_image=torch.cat([v.identity for v in active]),  # (B, 3, S, S)
        low_frame=to_model(lows, device),  # (B, 3, 64, 64)
        prev_frame=torch.cat([v.prev for v in active]),  # (B, 3, S, S)
    )
    if not config.unet.use_pasted_frame:
        return cond
    from facenhance_cli.pasting import edit_mask, paste_low_face

    matrices = [cast(np.ndarray, v.paste_matrix) for v in active]  # set in _open_video for these models
    sigma = config.conditioning.paste_detail_sigma
    pasted = [
        paste_low_face(v.identity_uint8, low, m, sigma)
        for v, low, m in zip(active, lows, matrices, strict=True)
    ]
    cond = cond.replace(pasted_frame=to_model(pasted, device))
    if config.unet.use_edit_mask:
        size = config.unet.image_size
        masks = [edit_mask(low, m, size)[..., None] for low, m in zip(lows, matrices, strict=True)]
        cond = cond.replace(edit_mask=to_device(to_mask_tensor(masks), device))  # (B, 1, S, S)
    if (levels := config.conditioning.edit_gate_levels) > 0:
        from facenhance_cli.pasting import expression_gate

        gates = [
            expression_gate(v.identity_uint8, low, m, levels)[..., None]
            for v, low, m in zip(active, lows, matrices, strict=True)
        ]
        cond = cond.replace(edit_gate=to_device(to_mask_tensor(gates), device))  # (B, 1, S, S)
    return cond
