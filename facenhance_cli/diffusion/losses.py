"""Training losses (Algorithm 1 and the usual alternatives) from a network output and the true (x0, eps)."""

from __future__ import annotations

import torch

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
