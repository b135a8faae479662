"""Samplers: plain functions `(denoiser, x_start, schedule, cond, generators, progress, **options) -> x0`.

Update math runs in float64 (EDM habit); the denoiser sees float32. Randomness comes only from
`generators` (one per batch row; see noise.py). `progress(i, n)` is called after each step. `cond` is
opaque: it goes to the denoiser untouched, so samplers know nothing of faces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypedDict

import numpy as np
import torch

from facenhance_cli.config import SamplingConfig, Spacing
from facenhance_cli.diffusion.denoiser import Cond, Denoiser
from facenhance_cli.diffusion.noise import randn_per_sample
from facenhance_cli.diffusion.schedule import Schedule

Progress = Callable[[int, int], None] | None
Sampler = Callable[..., torch.Tensor]


class SamplerOptions(TypedDict, total=False):
    """Keyword options of a sampler call (ddim takes all but `strength`; ddpm only `steps` and `eta`)."""

    steps: int  # denoising steps
    eta: float  # DDIM noise: 0 deterministic, 1 ancestral
    strength: float  # SDEdit: < 1 starts from the noised base image (the recurrent loop sets t_start)
    spacing: Spacing  # trailing | karras
    t_start: int  # the step the sampler starts from (T-1: pure noise)


def ddim_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """Descending timesteps with "trailing" spacing (Lin et al. 2024, Table 2): always starts at T-1."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be in 1..{num_timesteps}, got {steps}")
    # T - i T / S for i < S, rounded: exactly S values (np.arange with a float stride can give S + 1).
    ts = np.round(num_timesteps - np.arange(steps) * (num_timesteps / steps)).astype(np.int64) - 1
    return [int(t) for t in ts]


def karras_timesteps(schedule: Schedule, t_start: int, steps: int, rho: float = 7.0) -> list[int]:
    """Descending timesteps whose sigma_t = sqrt((1 - abar_t) / abar_t) follow Karras et al. 2022 (eq. 5):
    (sigma_max^(1/rho) + i / (S-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho from t_start down to t = 0,
    each rounded to the nearest step and kept distinct: more steps at low noise, where detail forms."""
    if not 1 <= steps <= t_start + 1:
        raise ValueError(f"steps must be in 1..{t_start + 1}, got {steps}")
    abar = schedule.alphas_cumprod.double()
    log_sigmas = (((1 - abar) / abar).sqrt()).log()  # increasing in t
    hi, lo = float(log_sigmas[t_start].exp()), float(log_sigmas[0].exp())
    ramp = np.linspace(0.0, 1.0, steps)
    sigmas = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    ts: list[int] = []
    for i, sigma in enumerate(sigmas):
        t = int((log_sigmas[: t_start + 1] - np.log(sigma)).abs().argmin())
        t = min(t, ts[-1] - 1) if ts else t_start
        ts.append(max(t, steps - 1 - i))  # leave room for the steps still to come
    return ts


def _batch_t(t: int, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)


def ddim(
    denoiser: Denoiser[Cond],
    x_start: torch.Tensor,
    schedule: Schedule,
    cond: Cond,
    generators: Sequence[torch.Generator],
    progress: Progress = None,
    *,
    steps: int = 25,
    eta: float = 0.0,
    t_start: int | None = None,
    spacing: str = "trailing",
) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) from x_start at step t_start (T-1 by default: pure noise).

    steps = T with eta = 0 is the paper's Algorithms 2-3 (METHOD.md). A later start (t_start < T-1, with
    x_start the caller's noised image) is SDEdit (Meng et al. 2022); `steps` then spans t_start..0.
    `spacing`: trailing (even in t) or karras (even in sigma^(1/7), denser at low noise).
    """
    n = schedule.num_timesteps
    t_start = n - 1 if t_start is None else t_start
    if not 0 <= t_start < n:
        raise ValueError(f"t_start must be in 0..{n - 1}, got {t_start}")
    abar = schedule.alphas_cumprod.tolist()
    steps = min(steps, t_start + 1)
    if spacing == "trailing":
        timesteps = ddim_timesteps(t_start + 1, steps)
    elif spacing == "karras":
        timesteps = karras_timesteps(schedule, t_start, steps)
    else:
        raise ValueError(f"unknown spacing {spacing!r}: trailing or karras")
    x = x_start.double()
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        abar_t = abar[t]
        abar_prev = abar[t_prev] if t_prev >= 0 else 1.0
        x0, eps = denoiser(x.float(), _batch_t(t, x), cond)
        sigma = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)) ** 0.5
        x = abar_prev**0.5 * x0.double() + max(1 - abar_prev - sigma**2, 0.0) ** 0.5 * eps.double()
        if sigma > 0:
            x = x + sigma * randn_per_sample(x.shape[1:], generators, x.device).double()
        if progress is not None:
            progress(i + 1, len(timesteps))
    return x.float()


def sdedit_start(
    schedule: Schedule, strength: float, x_init: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """(x_s, s): x_init noised to step s = round(strength T) - 1, x_s = sqrt(abar_s) x_init + sqrt(1 - abar_s) noise
    (SDEdit, Meng et al. 2022); strength 1 gives (noise, T - 1), the usual start."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    n = schedule.num_timesteps
    start = max(1, min(n, round(strength * n)))
    if start == n:
        return noise, n - 1
    abar = float(schedule.alphas_cumprod[start - 1])
    # float64, as the sampler's own updates: the first step then sees exactly this start.
    return abar**0.5 * x_init.double() + (1 - abar) ** 0.5 * noise.double(), start - 1


def ddpm(
    denoiser: Denoiser[Cond],
    x_start: torch.Tensor,
    schedule: Schedule,
    cond: Cond,
    generators: Sequence[torch.Generator],
    progress: Progress = None,
    *,
    steps: int | None = None,
    eta: float = 1.0,
) -> torch.Tensor:
    """Ancestral DDPM over all T steps from x_start = x_T (Ho et al. 2020, Algorithm 2), posterior variance
    beta tilde."""
    n = schedule.num_timesteps
    if steps not in (None, n):
        raise ValueError(f"the ddpm sampler runs all {n} steps; use ddim for fewer")
    betas = schedule.betas.tolist()
    abar = schedule.alphas_cumprod.tolist()
    abar_prev = schedule.alphas_cumprod_prev.tolist()
    variance = schedule.posterior_variance.tolist()
    x = x_start.double()
    for i, t in enumerate(range(n - 1, -1, -1)):
        x0, _ = denoiser(x.float(), _batch_t(t, x), cond)
        # Posterior mean coefficients (Ho et al. eq. 7).
        coef_x0 = betas[t] * abar_prev[t] ** 0.5 / (1 - abar[t])
        coef_xt = (1 - abar_prev[t]) * (1 - betas[t]) ** 0.5 / (1 - abar[t])
        x = coef_x0 * x0.double() + coef_xt * x
        if t > 0:
            x = x + variance[t] ** 0.5 * randn_per_sample(x.shape[1:], generators, x.device).double()
        if progress is not None:
            progress(i + 1, n)
    return x.float()


SAMPLERS: dict[str, Sampler] = {"ddim": ddim, "ddpm": ddpm}


def get_sampler(name: str) -> Sampler:
    """A sampler by name."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r} (available: {', '.join(SAMPLERS)})") from None


def options_for(sampling: SamplingConfig) -> SamplerOptions:
    """The keyword options `sampling.sampler` takes from a sampling config (ddpm: none; it runs all T steps)."""
    if sampling.sampler != "ddim":
        return {}
    return {
        "steps": sampling.steps,
        "eta": sampling.eta,
        "strength": sampling.strength,
        "spacing": sampling.spacing,
    }
