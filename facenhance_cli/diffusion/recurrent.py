"""The recurrent video loop of FacEnhance (Algorithm 3): frame n is conditioned on generated frame n-1."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import ConditioningConfig
from facenhance_cli.diffusion.denoiser import Denoiser
from facenhance_cli.diffusion.noise import frame_generator, randn_per_sample
from facenhance_cli.diffusion.samplers import Sampler, sdedit_start
from facenhance_cli.diffusion.schedule import Schedule

StepCallback = Callable[[int, int], None] | None
VIDEO_NOISE_INDEX = 2**31 - 1  # the frame index of the stream that shared x_T is drawn from


def noisy_prev_frame(
    prev_frame: torch.Tensor, std: float, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """f_prev + z, z ~ N(0, std^2 I), one generator per row: (B, 3, S, S) -> (B, 3, S, S)."""
    if std == 0:
        return prev_frame
    z = randn_per_sample(prev_frame.shape[1:], generators, prev_frame.device)
    return prev_frame + std * z


def generate_frame(
    denoiser: Denoiser,
    sampler: Sampler,
    schedule: Schedule,
    cond: Conditioning,
    seeds: Sequence[int],
    frame_indices: Sequence[int],
    prev_noise: ConditioningConfig = ConditioningConfig(),
    sampler_options: dict[str, Any] | None = None,
    on_step: StepCallback = None,
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
    options = dict(sampler_options or {})
    strength = options.pop("strength", 1.0)
    x_start, t_start = sdedit_start(schedule, strength, cond.base, x_T)
    if strength < 1.0:
        options["t_start"] = t_start
    prev_frame = cond.prev_frame if cond.prev_frame is not None else image
    frame_denoiser = denoiser
    if prev_noise.prev_noise_per_step:

        def frame_denoiser(
            x_t: torch.Tensor, t: torch.Tensor, c: Conditioning
        ) -> tuple[torch.Tensor, torch.Tensor]:
            noisy = noisy_prev_frame(prev_frame, prev_noise.prev_noise_std, generators)
            return denoiser(x_t, t, c.replace(prev_frame=noisy))

    else:
        cond = cond.replace(prev_frame=noisy_prev_frame(prev_frame, prev_noise.prev_noise_std, generators))
    return sampler(frame_denoiser, x_start, schedule, cond, generators, on_step, **options)


def generate_video(
    denoiser: Denoiser,
    sampler: Sampler,
    schedule: Schedule,
    conds: Iterable[Conditioning],
    seeds: Sequence[int],
    prev_noise: ConditioningConfig = ConditioningConfig(),
    sampler_options: dict[str, Any] | None = None,
    on_step: StepCallback = None,
    shared_noise: bool = False,
) -> Iterator[torch.Tensor]:
    """Algorithm 3 over B videos that advance together: yields frame n (B,3,S,S) in [-1, 1] as it is made.

    `conds` yields frame n's conditioning (its prev_frame is ignored and replaced here); frame 0 is
    conditioned on the identity image, frame n on generated frame n-1. Streaming: only the previous
    frame is kept, so memory is bounded.
    """
    prev_frame: torch.Tensor | None = None
    for n, cond in enumerate(conds):
        prev = cond.identity_image if prev_frame is None else prev_frame
        frame = generate_frame(
            denoiser,
            sampler,
            schedule,
            cond.replace(prev_frame=prev),
            seeds,
            [n] * len(seeds),
            prev_noise,
            sampler_options,
            on_step,
            shared_noise,
        )
        yield frame
        prev_frame = frame
