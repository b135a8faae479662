"""Preconditioning: what wraps the network's raw output into the model's prediction (skips, c_skip / c_out).

Two kinds, chosen by `diffusion.preconditioning`:
- `none`: the network output is the prediction in its parameterization; with `unet.identity_skip` the
  base image (the pasted frame, else the identity image) is added to an x0 output, so an untrained network
  (zero output layer) returns the base.
- `edm`: Karras et al. 2022 (EDM, Table 1, "Preconditioning"), written for a VP schedule and around a
  base image b: with sigma_t = sqrt((1 - abar_t) / abar_t) and x~ = x_t / sqrt(abar_t) = x0 + sigma_t eps,
      D = b + m * (c_skip (x~ - b) + c_out F(c_in (x~ - b), t, cond)),
      c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2),
  sd = `diffusion.sigma_data` and m the edit mask times the expression gate (each 1 without one). At low noise D passes x_t through; at
  high noise it leans on b and the network; where m = 0 the output is b exactly. The loss weight
  1 / c_out^2 (EDM eq. 8 with lambda = 1 / c_out^2) makes every noise level an O(1) regression for F.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import FacenhanceConfig
from facenhance_cli.diffusion.schedule import Schedule, at_timestep


def edm_coefficients(
    schedule: Schedule, t: torch.Tensor, sigma_data: float, like: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """(sqrt(abar_t), c_skip, c_out, c_in), each (B, 1, 1, 1) in `like`'s dtype (EDM Table 1, VP sigma_t)."""
    abar = at_timestep(schedule.alphas_cumprod, t, like.double())
    sigma2 = (1 - abar) / abar
    sd2 = sigma_data**2
    c_skip = sd2 / (sigma2 + sd2)
    c_out = sigma2.sqrt() * sigma_data / (sigma2 + sd2).sqrt()
    c_in = 1 / (sigma2 + sd2).sqrt()
    return tuple(c.to(like.dtype) for c in (abar.sqrt(), c_skip, c_out, c_in))


def model_output(
    network: Callable[..., torch.Tensor],
    config: FacenhanceConfig,
    schedule: Schedule,
    x_t: torch.Tensor,
    t: torch.Tensor,
    cond: Conditioning,
) -> torch.Tensor:
    """(B,3,S,S) the model's prediction in its parameterization (`diffusion.prediction`), skips applied."""
    d = config.diffusion
    if d.preconditioning == "edm":
        return edm_x0(network, config, schedule, x_t, t, cond)
    output = network(x_t, t, cond)  # (B, 3, S, S)
    if config.unet.identity_skip:
        output = output + cond.base
    return output


def edm_x0(
    network: Callable[..., torch.Tensor],
    config: FacenhanceConfig,
    schedule: Schedule,
    x_t: torch.Tensor,
    t: torch.Tensor,
    cond: Conditioning,
) -> torch.Tensor:
    """(B,3,S,S) D = b + m (c_skip (x~ - b) + c_out F(c_in (x~ - b))) (module docstring; EDM Table 1)."""
    x_t = x_t.float()
    sqrt_abar, c_skip, c_out, c_in = edm_coefficients(schedule, t, config.diffusion.sigma_data, x_t)
    base = cond.base if config.unet.identity_skip else torch.zeros_like(x_t)
    residual = x_t / sqrt_abar - base  # (B, 3, S, S): the edit plus sigma_t eps
    edit = c_skip * residual + c_out * network(c_in * residual, t, cond).float()
    if (weight := cond.edit_weight) is not None:
        edit = weight * edit
    if cond.kept_face is None or cond.kept_alpha is None:
        return base + edit
    return cond.kept_alpha * cond.kept_face + (1 - cond.kept_alpha) * (base + edit)  # conditioning.paste_face
