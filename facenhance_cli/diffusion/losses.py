"""Training losses (Algorithm 1 and the usual alternatives) from a network output and the true (x0, eps)."""

from __future__ import annotations

import torch

from facenhance_cli.diffusion.precond import edm_coefficients
from facenhance_cli.diffusion.schedule import Schedule, prediction_target, to_x0_eps, xprev_target

LOSSES = ("xprev", "eps", "v", "x0")


def diffusion_loss(
    schedule: Schedule,
    prediction: str,
    loss: str,
    output: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    x0: torch.Tensor,
    eps: torch.Tensor,
) -> torch.Tensor:
    """Mean squared error of `output` (parameterization `prediction`) against the `loss` target. Scalar.

    When loss == prediction the network output is compared directly; otherwise the output is first
    converted to (x0, eps) and the target quantity is rebuilt from them (e.g. the paper's x_{t-1} loss on
    an eps-predicting network: x_{t-1} = sqrt(abar_{t-1}) x0_pred + sqrt(1 - abar_{t-1}) eps_pred).
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}")
    target = prediction_target(schedule, loss, x0, t, eps).to(output.dtype)
    if loss == prediction:
        return torch.mean((output.float() - target.float()) ** 2)
    x0_pred, eps_pred = to_x0_eps(schedule, prediction, output.float(), x_t.float(), t)
    if loss == "x0":
        estimate = x0_pred
    elif loss == "eps":
        estimate = eps_pred
    elif loss == "v":
        estimate = prediction_target(schedule, "v", x0_pred, t, eps_pred)
    else:
        estimate = xprev_target(schedule, x0_pred, t, eps_pred)
    return torch.mean((estimate.float() - target.float()) ** 2)


# relative loss: a base closer to its target than RMS 0.005 (0.64 levels of 255, 52 dB) counts as this
# close, so a sample's weight stays finite: at most (sigma_data / 0.005)^2, 1600 for the small preset. Frame
# 0 (whose truth is the identity image) has a base at about 63 dB; v4 took it to 40 dB, which alone costs
# 0.7 dB of a 32-frame clip's mean PSNR (benchmarks/diagnose_per_sample.py, docs/experiments.md).
RELATIVE_FLOOR_RMS = 0.005


def edm_loss(
    x0_pred: torch.Tensor,
    x0: torch.Tensor,
    t: torch.Tensor,
    schedule: Schedule,
    sigma_data: float,
    edit_mask: torch.Tensor | None,
    relative_to: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scalar: mean of m (x0_pred - x0)^2 / c_out^2 over the edited pixels (EDM eq. 2 with Table 1's weight).

    With `relative_to` (the base, (B,3,S,S)) each sample's mean is scaled by sigma_data^2 over the base's
    own masked MSE against x0 (floored at RELATIVE_FLOOR_RMS^2): a first-order stand-in for the mean of
    log MSE, which is what mean per-frame PSNR rewards.
    """
    _, _, c_out, _ = edm_coefficients(schedule, t, sigma_data, x0_pred)
    weight = (1 / c_out**2).expand_as(x0_pred)
    if relative_to is None:
        if edit_mask is None:
            return (weight * (x0_pred - x0) ** 2).mean()
        weight = weight * edit_mask
        return (weight * (x0_pred - x0) ** 2).sum() / (edit_mask.sum() * x0.shape[1]).clamp(min=1.0)
    mask = torch.ones_like(x0_pred[:, :1]) if edit_mask is None else edit_mask  # (B, 1, S, S)
    pixels = (mask.sum(dim=(1, 2, 3)) * x0.shape[1]).clamp(min=1.0)  # (B,)
    sample_loss = (mask * weight * (x0_pred - x0) ** 2).sum(dim=(1, 2, 3)) / pixels  # (B,)
    base_mse = (mask * (relative_to.float() - x0) ** 2).sum(dim=(1, 2, 3)) / pixels  # (B,)
    scale = sigma_data**2 / (base_mse + RELATIVE_FLOOR_RMS**2)  # (B,), no gradient flows through x0 or base
    return (scale.detach() * sample_loss).mean()


_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def detail_energy(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean |4-neighbour Laplacian| of (B, 3, S, S) images over the (B, 1, S, S) mask's pixels."""
    kernel = torch.tensor(_LAPLACIAN, dtype=images.dtype, device=images.device).expand(3, 1, 3, 3)
    laplacian = torch.nn.functional.conv2d(images, kernel, padding=1, groups=3).abs()  # (B, 3, S, S)
    pixels = (mask.sum(dim=(1, 2, 3)) * images.shape[1]).clamp(min=1.0)
    return (mask * laplacian).sum(dim=(1, 2, 3)) / pixels


def detail_energy_loss(x0_pred: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Scalar: mean over samples of ((E(x0_pred) - E(x0)) / E(x0))^2, E = `detail_energy` in the mask."""
    mask = torch.ones_like(x0[:, :1]) if mask is None else mask
    truth = detail_energy(x0, mask).clamp(min=1e-3)  # (B,)
    return (((detail_energy(x0_pred, mask) - truth) / truth) ** 2).mean()
