"""The recurrent video loop of FacEnhance (Algorithm 3): frame n is conditioned on generated frame n-1."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from facenhance_cli.diffusion.denoiser import Cond, Denoiser
from facenhance_cli.diffusion.noise import frame_generator, randn_per_sample
from facenhance_cli.diffusion.samplers import Sampler
from facenhance_cli.diffusion.schedule import Schedule

StepCallback = Callable[[int, int], None] | None


@dataclass(frozen=True)
class PrevNoise:
    """Noise z on the previous frame (paper: std 1 in [-1, 1] scale, "only the silhouette survives")."""

    std: float = 1.0
    per_step: bool = False  # False: one z per frame (our default); True: a fresh z at every denoising step


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
    low_frame: torch.Tensor,
    prev_frame: torch.Tensor,
    identity_image: torch.Tensor,
    seeds: Sequence[int],
    frame_indices: Sequence[int],
    prev_noise: PrevNoise = PrevNoise(),
    sampler_options: dict[str, Any] | None = None,
    on_step: StepCallback = None,
    pasted_frame: torch.Tensor | None = None,
) -> torch.Tensor:
    """One step of Algorithm 3 for a batch of videos: x_T ~ N(0, I), sample x0 given (I_id, f_low, f_prev + z).

    low_frame (B,3,64,64), prev_frame, identity_image and pasted_frame (models that use it) (B,3,S,S), all
    in [-1, 1]. Row i draws its noise from the generator of (seeds[i], frame_indices[i]): x_T first, then z;
    so a video's result does not depend on which other videos share its batch. Returns x0 (B,3,S,S).
    """
    generators = [frame_generator(s, n) for s, n in zip(seeds, frame_indices, strict=True)]
    x_T = randn_per_sample(identity_image.shape[1:], generators, identity_image.device)  # (B, 3, S, S)
    cond: Cond = {"identity_image": identity_image, "low_frame": low_frame}
    if pasted_frame is not None:
        cond["pasted_frame"] = pasted_frame
    frame_denoiser = denoiser
    if prev_noise.per_step:
        cond["prev_frame"] = prev_frame

        def frame_denoiser(x_t: torch.Tensor, t: torch.Tensor, c: Cond) -> tuple[torch.Tensor, torch.Tensor]:
            noisy = noisy_prev_frame(c["prev_frame"], prev_noise.std, generators)
            return denoiser(x_t, t, {**c, "prev_frame": noisy})

    else:
        cond["prev_frame"] = noisy_prev_frame(prev_frame, prev_noise.std, generators)
    return sampler(frame_denoiser, x_T, schedule, cond, generators, on_step, **(sampler_options or {}))


def generate_video(
    denoiser: Denoiser,
    sampler: Sampler,
    schedule: Schedule,
    low_frames: Iterable[torch.Tensor],
    identity_image: torch.Tensor,
    seeds: Sequence[int],
    prev_noise: PrevNoise = PrevNoise(),
    sampler_options: dict[str, Any] | None = None,
    on_step: StepCallback = None,
    pasted_frames: Iterable[torch.Tensor] | None = None,
) -> Iterator[torch.Tensor]:
    """Algorithm 3 over B videos that advance together: yields frame n (B,3,S,S) in [-1, 1] as it is made.

    `low_frames` yields (B,3,64,64) per frame index (and `pasted_frames`, for models that use them,
    (B,3,S,S)); frame 0 is conditioned on the identity image, frame n on generated frame n-1. Streaming:
    only the previous frame is kept, so memory is bounded.
    """
    prev_frame = identity_image
    pasted = iter(pasted_frames) if pasted_frames is not None else None
    for n, low_frame in enumerate(low_frames):
        frame = generate_frame(
            denoiser,
            sampler,
            schedule,
            low_frame,
            prev_frame,
            identity_image,
            seeds,
            [n] * len(seeds),
            prev_noise,
            sampler_options,
            on_step,
            next(pasted) if pasted is not None else None,
        )
        yield frame
        prev_frame = frame
