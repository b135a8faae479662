"""Bind a network to a schedule: the denoiser every sampler calls, (x_t, t, cond) -> (x0_pred, eps_pred)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

import torch

from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import FacenhanceConfig
from facenhance_cli.diffusion.precond import model_output
from facenhance_cli.diffusion.schedule import Schedule, eps_from_x0, to_x0_eps

Cond = TypeVar("Cond")
# (x_t, t, cond) -> (x0_pred, eps_pred). Generic in the conditioning, which samplers pass to the denoiser
# untouched: `make_denoiser` gives a Denoiser[Conditioning], the samplers take any Denoiser[Cond].
Denoiser = Callable[[torch.Tensor, torch.Tensor, Cond], tuple[torch.Tensor, torch.Tensor]]
# (x_t, t, cond) -> the raw network output (B, 3, S, S): a torch module, compiled or not, or another backend.
NetworkForward = Callable[[torch.Tensor, torch.Tensor, Conditioning], torch.Tensor]


def make_denoiser(
    network: NetworkForward,
    config: FacenhanceConfig,
    schedule: Schedule,
    autocast_dtype: torch.dtype | None = None,
) -> Denoiser[Conditioning]:
    """A denoiser for `network` with the preconditioning and parameterization of `config.diffusion`.

    With `diffusion.clip_x0`, x0_pred is clamped to the image range [-1, 1] and eps recomputed from it, so
    deterministic samplers stay on the data manifold (as guided-diffusion's clip_denoised).
    """
    prediction = config.diffusion.prediction

    def denoise(x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        autocast = (
            torch.autocast(x_t.device.type, dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            output = model_output(network, config, schedule, x_t, t, cond)  # (B, 3, S, S)
        x0, eps = to_x0_eps(schedule, prediction, output.float(), x_t, t)
        if config.diffusion.clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
            eps = eps_from_x0(schedule, x_t, t, x0)
        return x0.float(), eps.float()

    return denoise
