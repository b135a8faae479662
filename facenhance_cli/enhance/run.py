"""Running an `enhance` run: its jobs' videos through Algorithm 3 (`diffusion.recurrent`), B at a time.

Frame n of up to B videos goes through one network call per denoising step. A video joins the batch when
another leaves it; frames are streamed in and out, and a failing video is reported while the others go on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from facenhance_cli.checkpoint import LoadedModel
from facenhance_cli.config import FacenhanceConfig
from facenhance_cli.diffusion.recurrent import RecurrentSampler
from facenhance_cli.diffusion.samplers import Progress
from facenhance_cli.enhance.planning import EnhanceJob, EnhanceOptions, JobResult, check_run_flags
from facenhance_cli.enhance.videos import OpenVideo, load_identity, open_video
from facenhance_cli.errors import UsageError, one_line, raise_if_interrupted, stop_if_signalled

if TYPE_CHECKING:
    from facenhance_cli.backends import Network


def is_empty_file(path: Path) -> bool:
    """A regular file of 0 bytes (an output we write is never empty: it is renamed into place whole)."""
    try:
        return path.is_file() and path.stat().st_size == 0
    except OSError:
        return False


@dataclass
class Reporter:
    """Progress hooks; the CLI turns them into rich bars. All optional."""

    on_job_start: Callable[[EnhanceJob, int], None] | None = None  # (job, n_frames or 0)
    on_frame: Callable[[list[EnhanceJob], int], None] | None = None  # after each frame step of a batch
    progress: Progress = None  # denoising step i of n of the current call
    on_job_end: Callable[[JobResult], None] | None = None
    notes: list[str] = field(default_factory=list)


def enhance_videos(
    jobs: list[EnhanceJob], model: LoadedModel, options: EnhanceOptions, reporter: Reporter | None = None
) -> list[JobResult]:
    """Run Algorithm 3 over many videos, B at a time; returns one result per job (done, skipped or failed).

    Each video's noise depends on (seed, frame) only, never on the other videos in its batch.
    """
    check_run_flags(options)
    run = _Run(model.config, options, reporter or Reporter(), make_sampler(model, options))
    pending, active = list(jobs), list[OpenVideo]()
    try:
        while pending or active:
            while pending and len(active) < options.batch_videos:
                video = run.start(pending.pop(0))
                if video is not None:
                    active.append(video)
            if active:
                active = run.step(active)
    except BaseException as exc:  # Ctrl-C or a crash: no partial outputs left behind
        for video in active:
            video.abort(exc)
        raise
    return run.results


def make_sampler(model: LoadedModel, options: EnhanceOptions) -> RecurrentSampler:
    """The run's Algorithm 3: the checkpoint's sampling settings with the command line's on top."""
    from facenhance_cli.diffusion.denoiser import make_denoiser
    from facenhance_cli.diffusion.samplers import get_sampler, options_for
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
    flags: dict[str, object] = {"sampler": options.sampler, "steps": options.steps, "eta": options.eta}
    flags.update(strength=options.strength, spacing=options.spacing, shared_noise=options.shared_noise)
    sampling = config.with_overrides(
        {f"sampling.{key}": value for key, value in flags.items()},
        names={f"sampling.{key}": f"--{key.replace('_', '-')}" for key in flags},
    ).sampling
    network, autocast = _forward_pass(model, options)
    schedule = make_schedule(config.diffusion)
    return RecurrentSampler(
        make_denoiser(network, config, schedule, autocast),
        get_sampler(sampling.sampler),
        schedule,
        config.conditioning,
        options_for(sampling),
        sampling.shared_noise,
        reads_prev_frame=config.unet.use_prev_frame,
    )


def _forward_pass(model: LoadedModel, options: EnhanceOptions) -> tuple[Network, torch.dtype | None]:
    """The network's forward on the chosen backend, and the autocast dtype torch runs it in."""
    from facenhance_cli.accel import compile_network, configure_cuda_math
    from facenhance_cli.backends import make_network

    configure_cuda_math(options.device)
    if options.backend != "torch":  # the backend computes in `precision` itself
        threads = options.threads or torch.get_num_threads()
        return make_network(model.network, model.config, options.backend, options.precision, threads), None
    autocast = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[options.precision]
    network = compile_network(model.network, options.device) if options.compile else model.network
    return network, autocast


@dataclass
class _Run:
    """One enhance run's shared state: the model's config, the options, progress hooks, results so far."""

    config: FacenhanceConfig
    options: EnhanceOptions
    reporter: Reporter
    sampler: RecurrentSampler
    results: list[JobResult] = field(default_factory=list)
    identities: dict[Path, tuple[np.ndarray, str | None]] = field(default_factory=dict)

    def report(self, result: JobResult) -> None:
        """Record one job's result and tell the reporter."""
        self.results.append(result)
        if self.reporter.on_job_end:
            self.reporter.on_job_end(result)

    def start(self, job: EnhanceJob) -> OpenVideo | None:
        """Open a job for the batch, or report it skipped (output exists) or failed (a bad input)."""
        stop_if_signalled()  # a SIGTERM that a library swallowed still stops the batch here
        earlier = []
        if job.output.exists() and not self.options.overwrite:
            if not is_empty_file(job.output):
                self.report(JobResult(job, "skipped", message="output exists (use --overwrite)"))
                return None
            # Not a finished output (ours are renamed into place whole): something else left it. Redo it.
            earlier.append(f"{job.output} exists but is empty (0 bytes): enhancing it again")
        try:
            identity = self.identity_image(job.identity)
            video = open_video(job, identity, self.config, self.options, self.reporter.notes, earlier)
            if self.reporter.on_job_start:
                self.reporter.on_job_start(job, video.n_frames)
        except Exception as exc:  # one bad video never stops the batch (PyAV raises ValueErrors too)
            raise_if_interrupted(exc)  # ... but a signal does
            self.report(JobResult(job, "failed", message=one_line(exc)))
            return None
        self.sampler.join(id(video), self.options.seed)
        return video

    def identity_image(self, path: Path) -> np.ndarray:
        """The identity image at the model's size, loaded (and aligned, with a note) once per path."""
        if path not in self.identities:
            self.identities[path] = load_identity(path, self.config.unet.image_size, self.options.weights_dir)
        image, note = self.identities[path]
        if note and note not in self.reporter.notes:
            self.reporter.notes.append(note)
        return image

    def step(self, active: list[OpenVideo]) -> list[OpenVideo]:
        """The next frames of every active video in one sampler call (frame n, or frames n..n+k-1 of models
        without the previous frame); returns the videos that have frames left."""
        from facenhance_cli.conditioning import collate, frame_images
        from facenhance_cli.data import to_uint8

        per_video = 1 if self.config.unet.use_prev_frame else max(1, self.options.frames_per_call)
        rows = [(v, low) for v in active for low in v.upcoming(per_video)]
        images = [frame_images(self.config, v.identity_image, low, v.paste_matrix) for v, low in rows]
        keys = [id(v) for v, _ in rows]
        frames = to_uint8(
            self.sampler.step(keys, collate(images, self.options.device), self.reporter.progress)
        )
        failed: set[int] = set()
        for (video, _), frame in zip(rows, frames, strict=True):
            if id(video) in failed:
                continue
            try:
                video.advance(frame)
            except Exception as exc:  # e.g. a container that refuses the audio codec
                raise_if_interrupted(exc)
                failed.add(id(video))
                self._finish(video, exc)
        still_active = []
        for video in active:
            if id(video) in failed:
                continue
            if video.low is None:
                self._finish(video, None)
            else:
                still_active.append(video)
        if self.reporter.on_frame:
            self.reporter.on_frame([v.job for v, _ in rows], len(rows))
        return still_active

    def _finish(self, video: OpenVideo, error: BaseException | None) -> None:
        """A video leaves the batch: closed (or deleted after `error`) and reported."""
        self.sampler.leave(id(video))
        self.report(video.close(error))
