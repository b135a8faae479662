"""Noise schedule in float64 and the conversions between x_t, x0, eps, v and x_{t-1} (Ho et al. 2020).

Timesteps are 0-based integers t in [0, T-1]; alphas_cumprod[t] is abar_t and abar_{-1} = 1, so the step
from t = 0 lands on x0. The schedule holds no network.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from facenhance_cli.config import DiffusionConfig


@dataclass(frozen=True)
class Schedule:
    """betas and their derived quantities, float64 tensors of shape (T,)."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor  # abar_{t-1}, with abar_{-1} = 1
    posterior_variance: (
        torch.Tensor
    )  # beta tilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t) (Ho et al. eq. 7)

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.shape[0])

    def to(self, device: torch.device | str) -> Schedule:
        """The same schedule on `device` (still float64), so per-step lookups copy nothing to the device."""
        return Schedule(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))


def linear_betas(num_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Linear betas (Ho et al. 2020, Sec. 4; the paper's 1e-4..0.02 over T = 1000)."""
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021, eq. 17), betas clipped at 0.999."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=0.999)


def make_schedule(config: DiffusionConfig) -> Schedule:
    """The schedule a DiffusionConfig describes."""
    if config.beta_schedule == "linear":
        betas = linear_betas(config.num_timesteps, config.beta_start, config.beta_end)
    elif config.beta_schedule == "cosine":
        betas = cosine_betas(config.num_timesteps)
    else:
        raise ValueError(f"unknown beta schedule {config.beta_schedule!r}")
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    return Schedule(betas, alphas_cumprod, alphas_cumprod_prev, posterior_variance)


def at_timestep(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped (B, 1, 1, 1) for broadcasting over images, in `like`'s dtype and device."""
    out = values.to(t.device)[t.long()]  # no copy when the schedule already lives there (Schedule.to)
    return out.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def q_sample(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Ho et al. eq. 4)."""
    abar = at_timestep(schedule.alphas_cumprod, t, x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * eps


def xprev_target(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The paper's target x_{t-1} = sqrt(abar_{t-1}) x0 + sqrt(1 - abar_{t-1}) eps, same eps as x_t (Alg. 1)."""
    abar_prev = at_timestep(schedule.alphas_cumprod_prev, t, x0)
    return abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps


def v_target(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (Salimans & Ho 2022, Sec. 4)."""
    abar = at_timestep(schedule.alphas_cumprod, t, x0)
    return abar.sqrt() * eps - (1 - abar).sqrt() * x0


def prediction_target(
    schedule: Schedule, prediction: str, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor
) -> torch.Tensor:
    """What a network of parameterization `prediction` should output for (x0, eps, t)."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return v_target(schedule, x0, t, eps)
    if prediction == "xprev":
        return xprev_target(schedule, x0, t, eps)
    raise ValueError(f"unknown prediction {prediction!r}")


def to_x0_eps(
    schedule: Schedule, prediction: str, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert a network output of parameterization `prediction` to (x0_pred, eps_pred), in float64 math."""
    out = output.double()
    xt = x_t.double()
    abar = at_timestep(schedule.alphas_cumprod, t, xt)
    a, s = abar.sqrt(), (1 - abar).sqrt()
    if prediction == "eps":
        eps = out
        x0 = (xt - s * eps) / a
    elif prediction == "x0":
        x0 = out
        eps = (xt - a * x0) / s
    elif prediction == "v":
        x0 = a * xt - s * out
        eps = s * xt + a * out
    elif prediction == "xprev":
        # Solve [x_t; x_{t-1}] = [[a, s], [a_prev, s_prev]] [x0; eps]; the determinant is ~beta_t / 2,
        # which is why METHOD.md advises against this parameterization.
        abar_prev = at_timestep(schedule.alphas_cumprod_prev, t, xt)
        ap, sp = abar_prev.sqrt(), (1 - abar_prev).sqrt()
        det = a * sp - s * ap
        x0 = (sp * xt - s * out) / det
        eps = (a * out - ap * xt) / det
    else:
        raise ValueError(f"unknown prediction {prediction!r}")
    return x0, eps


def eps_from_x0(schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """eps consistent with x_t and a (possibly clipped) x0: (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)."""
    abar = at_timestep(schedule.alphas_cumprod, t, x_t.double())
    return (x_t.double() - abar.sqrt() * x0.double()) / (1 - abar).sqrt()


def xprev_loss_weight(schedule: Schedule) -> torch.Tensor:
    """k_t^2 (METHOD.md): the x_{t-1} loss equals k_t^2 ||x0_pred - x0||^2, k_t as below. Shape (T,)."""
    abar, abar_prev = schedule.alphas_cumprod, schedule.alphas_cumprod_prev
    k = abar_prev.sqrt() - abar.sqrt() * ((1 - abar_prev) / (1 - abar)).sqrt()
    return k**2
