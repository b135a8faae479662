"""The recurrent video loop of FacEnhance (Algorithm 3): frame n is conditioned on generated frame n-1."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from facenhance_cli.conditioning import Conditioning, add_prev_noise
from facenhance_cli.config import ConditioningConfig
from facenhance_cli.diffusion.denoiser import Denoiser
from facenhance_cli.diffusion.noise import frame_generator, randn_per_sample
from facenhance_cli.diffusion.samplers import Progress, Sampler, SamplerOptions, sdedit_start
from facenhance_cli.diffusion.schedule import Schedule

VIDEO_NOISE_INDEX = 2**31 - 1  # the frame index of the stream that shared x_T is drawn from


def noisy_prev_frame(cond: Conditioning, std: float, generators: Sequence[torch.Generator]) -> Conditioning:
    """cond with z ~ N(0, I) drawn from each row's generator added to its previous frame as std z."""
    if std == 0 or cond.prev_frame is None:
        return cond
    z = randn_per_sample(cond.prev_frame.shape[1:], generators, cond.prev_frame.device)  # (B, 3, S, S)
    return add_prev_noise(cond, std, z)


def generate_frame(
    denoiser: Denoiser[Conditioning],
    sampler: Sampler,
    schedule: Schedule,
    cond: Conditioning,
    seeds: Sequence[int],
    frame_indices: Sequence[int],
    prev_noise: ConditioningConfig = ConditioningConfig(),
    sampler_options: SamplerOptions | None = None,
    progress: Progress = None,
    shared_noise: bool = False,
) -> torch.Tensor:
    """One step of Algorithm 3 for a batch of videos: x_T ~ N(0, I), sample x0 given (I_id, f_low, f_prev + z).

    `cond` holds the clean previous frame (the identity image for frame 0); z is added here. Row i draws
    its noise from the generator of (seeds[i], frame_indices[i]): x_T first, then z; so a video's result
    does not depend on which other videos share its batch. With `shared_noise`, x_T comes from the video's
    own stream instead (the same for every frame). `sampler_options` may hold `strength` < 1: the sampler
    then starts from the noised base image (SDEdit). Returns x0 (B,3,S,S) in [-1, 1].
    """
    generators = [frame_generator(s, n) for s, n in zip(seeds, frame_indices, strict=True)]
    image = cond.identity_image
    x_T_generators = [frame_generator(s, VIDEO_NOISE_INDEX) for s in seeds] if shared_noise else generators
    x_T = randn_per_sample(image.shape[1:], x_T_generators, image.device)  # (B, 3, S, S)
    options: SamplerOptions = {**(sampler_options or {})}
    strength = options.pop("strength", 1.0)
    x_start, t_start = sdedit_start(schedule, strength, cond.base, x_T)
    if strength < 1.0:
        options["t_start"] = t_start
    if cond.prev_frame is None:
        cond = cond.replace(prev_frame=image)
    std = prev_noise.prev_noise_std
    frame_denoiser = denoiser
    if prev_noise.prev_noise_per_step:
        clean = cond

        def frame_denoiser(
            x_t: torch.Tensor, t: torch.Tensor, c: Conditioning
        ) -> tuple[torch.Tensor, torch.Tensor]:
            return denoiser(x_t, t, noisy_prev_frame(clean, std, generators))

    else:
        cond = noisy_prev_frame(cond, std, generators)
    return sampler(frame_denoiser, x_start, schedule, cond, generators, progress, **options)


@dataclass
class _Row:
    """One video of a recurrent batch: its seed, the index of its next frame and its last generated frame."""

    seed: int
    next_index: int = 0
    prev_frame: torch.Tensor | None = None  # (1, 3, S, S); None before frame 0 (the identity image then)


class RecurrentSampler:
    """Algorithm 3 over a batch whose videos (rows) join and leave: each row keeps its previous frame and
    its own noise stream, so a video's frames do not depend on which videos share its calls.

    `step(keys, cond)` draws the next frame of each row named in `keys` in one sampler call. A key given
    k times draws that video's next k frames together: only for models that do not read the previous
    frame (`reads_prev_frame=False`), whose frames do not depend on each other.
    """

    def __init__(
        self,
        denoiser: Denoiser[Conditioning],
        sampler: Sampler,
        schedule: Schedule,
        prev_noise: ConditioningConfig = ConditioningConfig(),
        sampler_options: SamplerOptions | None = None,
        shared_noise: bool = False,
        reads_prev_frame: bool = True,
    ) -> None:
        self.denoiser, self.sampler, self.schedule = denoiser, sampler, schedule
        self.prev_noise = prev_noise
        self.sampler_options: SamplerOptions = {**(sampler_options or {})}
        self.shared_noise, self.reads_prev_frame = shared_noise, reads_prev_frame
        self.rows: dict[Hashable, _Row] = {}

    def join(self, key: Hashable, seed: int) -> None:
        """A new video: its frame 0 will be conditioned on its identity image."""
        if key in self.rows:
            raise ValueError(f"row {key!r} is already in the batch")
        self.rows[key] = _Row(seed)

    def leave(self, key: Hashable) -> None:
        """A finished (or failed) video leaves the batch; its state is dropped."""
        self.rows.pop(key, None)

    def step(self, keys: Sequence[Hashable], cond: Conditioning, progress: Progress = None) -> torch.Tensor:
        """Frame n of each row in `keys` (cond row i belongs to keys[i]; its prev_frame is set here):
        (len(keys), 3, S, S) in [-1, 1]."""
        rows = [self.rows[key] for key in keys]
        if self.reads_prev_frame and len(set(keys)) < len(keys):
            raise ValueError("a model that reads the previous frame draws one frame per video per call")
        indices, prev = [], []
        counts: dict[Hashable, int] = {}
        for i, (key, row) in enumerate(zip(keys, rows, strict=True)):
            indices.append(row.next_index + counts.get(key, 0))
            counts[key] = counts.get(key, 0) + 1
            prev.append(cond.identity_image[i : i + 1] if row.prev_frame is None else row.prev_frame)
        frames = generate_frame(
            self.denoiser,
            self.sampler,
            self.schedule,
            cond.replace(prev_frame=torch.cat(prev)),  # (B, 3, S, S) clean; z is added in generate_frame
            seeds=[row.seed for row in rows],
            frame_indices=indices,
            prev_noise=self.prev_noise,
            sampler_options=self.sampler_options,
            progress=progress,
            shared_noise=self.shared_noise,
        )
        for i, row in enumerate(rows):
            row.next_index += 1
            row.prev_frame = frames[i : i + 1]
        return frames


def generate_video(
    denoiser: Denoiser[Conditioning],
    sampler: Sampler,
    schedule: Schedule,
    conds: Iterable[Conditioning],
    seeds: Sequence[int],
    prev_noise: ConditioningConfig = ConditioningConfig(),
    sampler_options: SamplerOptions | None = None,
    progress: Progress = None,
    shared_noise: bool = False,
) -> Iterator[torch.Tensor]:
    """Algorithm 3 over B videos that advance together: yields frame n (B,3,S,S) in [-1, 1] as it is made.

    `conds` yields frame n's conditioning (its prev_frame is ignored and replaced); frame 0 is conditioned
    on the identity image, frame n on generated frame n-1. Streaming: only the previous frame is kept.
    """
    loop = RecurrentSampler(denoiser, sampler, schedule, prev_noise, sampler_options, shared_noise)
    keys = list(range(len(seeds)))
    for key, seed in zip(keys, seeds, strict=True):
        loop.join(key, seed)
    for cond in conds:
        yield loop.step(keys, cond, progress)
