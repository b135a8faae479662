"""Bind a network to a schedule: the denoiser every sampler calls, (x_t, t, cond) -> (x0_pred, eps_pred)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from facenhance_cli.diffusion.schedule import Schedule, eps_from_x0, to_x0_eps

Cond = dict[str, torch.Tensor]  # identity_image, prev_frame (already noised), low_frame[, pasted_frame]
Denoiser = Callable[[torch.Tensor, torch.Tensor, Cond], tuple[torch.Tensor, torch.Tensor]]


def make_denoiser(
    network: nn.Module,
    schedule: Schedule,
    prediction: str,
    clip_x0: bool = True,
    autocast_dtype: torch.dtype | None = None,
) -> Denoiser:
    """A denoiser for `network` whose output has parameterization `prediction` (eps, x0, v or xprev).

    With `clip_x0`, x0_pred is clamped to the image range [-1, 1] and eps recomputed from it, so that
    deterministic samplers stay on the data manifold (as guided-diffusion's clip_denoised).
    """

    def denoise(x_t: torch.Tensor, t: torch.Tensor, cond: Cond) -> tuple[torch.Tensor, torch.Tensor]:
        device_type = x_t.device.type
        autocast = (
            torch.autocast(device_type, dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            output = network(
                x_t,
                t,
                cond["identity_image"],
                cond["prev_frame"],
                cond["low_frame"],
                cond.get("pasted_frame"),
            )  # (B, 3, S, S)
        x0, eps = to_x0_eps(schedule, prediction, output.float(), x_t, t)
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
            eps = eps_from_x0(schedule, x_t, t, x0)
        return x0.float(), eps.float()

    return denoise
