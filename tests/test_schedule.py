"""Schedule, conversions and losses against independent numpy float64 computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facenhance_cli.config import DiffusionConfig
from facenhance_cli.diffusion.losses import diffusion_loss
from facenhance_cli.diffusion.schedule import (
    make_schedule,
    prediction_target,
    q_sample,
    to_x0_eps,
    xprev_loss_weight,
    xprev_target,
)

T = 1000


@pytest.fixture(scope="module")
def schedule():
    return make_schedule(DiffusionConfig())


def test_linear_schedule_matches_numpy_golden(schedule):
    betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
    alphas_cumprod = np.cumprod(1 - betas)
    prev = np.append(1.0, alphas_cumprod[:-1])
    posterior = betas * (1 - prev) / (1 - alphas_cumprod)
    assert schedule.betas.dtype == torch.float64
    np.testing.assert_allclose(schedule.betas.numpy(), betas, rtol=0, atol=1e-15)
    np.testing.assert_allclose(schedule.alphas_cumprod.numpy(), alphas_cumprod, rtol=1e-12)
    np.testing.assert_allclose(schedule.alphas_cumprod_prev.numpy(), prev, rtol=1e-12)
    np.testing.assert_allclose(schedule.posterior_variance.numpy(), posterior, rtol=1e-12)
    # Known values of the DDPM linear schedule: abar at the last step is about 4.04e-5.
    assert schedule.alphas_cumprod[-1].item() == pytest.approx(4.0358e-5, rel=1e-3)
    assert schedule.posterior_variance[0].item() == 0.0


def test_cosine_schedule_is_monotone_and_clipped():
    s = make_schedule(DiffusionConfig(beta_schedule="cosine"))
    assert torch.all(s.alphas_cumprod[1:] < s.alphas_cumprod[:-1])
    assert s.betas.max().item() <= 0.999


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "xprev"])
def test_prediction_round_trip(schedule, prediction):
    """q_sample, then the ideal network output of each parameterization, gives x0 and eps back."""
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 3, 8, 8, generator=gen) * 2 - 1
    eps = torch.randn(6, 3, 8, 8, generator=gen)
    t = torch.tensor([0, 1, 10, 250, 600, 999])
    x_t = q_sample(schedule, x0.double(), t, eps.double())
    output = prediction_target(schedule, prediction, x0.double(), t, eps.double())
    x0_back, eps_back = to_x0_eps(schedule, prediction, output, x_t, t)
    tol = 1e-6 if prediction != "xprev" else 1e-4  # xprev divides by ~beta_t: badly conditioned
    torch.testing.assert_close(x0_back, x0.double(), atol=tol, rtol=0)
    if prediction != "xprev":
        torch.testing.assert_close(eps_back[1:], eps[1:].double(), atol=tol, rtol=0)


@pytest.mark.parametrize("t", [1, 7, 500])
def test_xprev_target_is_a_ddim_step_from_the_true_x0(schedule, t):
    """The paper's x_{t-1} target equals the state after one stride-1 DDIM (eta 0) step of the sampler."""
    from facenhance_cli.diffusion.noise import frame_generator
    from facenhance_cli.diffusion.samplers import ddim
    from facenhance_cli.diffusion.schedule import Schedule

    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 3, 8, 8, generator=gen) * 2 - 1
    eps = torch.randn(2, 3, 8, 8, generator=gen)
    # The schedule truncated to steps 0..t: the same abar values, and a stride-1 DDIM run starting at t.
    head = Schedule(
        *(
            v[: t + 1]
            for v in (
                schedule.betas,
                schedule.alphas_cumprod,
                schedule.alphas_cumprod_prev,
                schedule.posterior_variance,
            )
        )
    )
    seen = []

    def oracle(x_t, t_batch, cond):  # knows the true (x0, eps) at the first step
        seen.append(x_t.double())
        if len(seen) == 1:
            return x0, eps
        abar = head.alphas_cumprod[t_batch].reshape(-1, 1, 1, 1).float()
        return x0, (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()

    x_t = q_sample(schedule, x0, torch.tensor([t, t]), eps)
    ddim(oracle, x_t, head, {}, [frame_generator(0, 0)] * 2, steps=t + 1, eta=0.0)
    target = xprev_target(schedule, x0.double(), torch.tensor([t, t]), eps.double())
    torch.testing.assert_close(seen[1], target, atol=1e-5, rtol=0)
    # And x_{t-1} is not x_t: the step really moved.
    assert (seen[1] - seen[0]).abs().max() > 1e-4


def test_xprev_loss_equals_weighted_x0_loss(schedule):
    """METHOD.md identity: ||xprev_pred - xprev||^2 = k_t^2 ||x0_pred - x0||^2 for an eps network."""
    gen = torch.Generator().manual_seed(2)
    x0 = torch.rand(1, 3, 8, 8, generator=gen) * 2 - 1
    eps = torch.randn(1, 3, 8, 8, generator=gen)
    t = torch.tensor([300])
    x_t = q_sample(schedule, x0, t, eps)
    output = eps + 0.1 * torch.randn(1, 3, 8, 8, generator=gen)  # an imperfect eps prediction
    loss = diffusion_loss(schedule, "eps", "xprev", output, x_t, t, x0, eps)
    x0_pred, _ = to_x0_eps(schedule, "eps", output, x_t, t)
    weighted = xprev_loss_weight(schedule)[300] * torch.mean((x0_pred - x0.double()) ** 2)
    assert loss.item() == pytest.approx(weighted.item(), rel=1e-4)
    assert loss.item() > 0


@pytest.mark.parametrize("loss", ["xprev", "eps", "v", "x0"])
def test_losses_vanish_for_the_ideal_output(schedule, loss):
    gen = torch.Generator().manual_seed(3)
    x0 = torch.rand(3, 3, 8, 8, generator=gen) * 2 - 1
    eps = torch.randn(3, 3, 8, 8, generator=gen)
    t = torch.tensor([3, 400, 900])
    x_t = q_sample(schedule, x0, t, eps)
    for prediction in ("eps", "v", "x0"):
        ideal = prediction_target(schedule, prediction, x0, t, eps)
        assert diffusion_loss(schedule, prediction, loss, ideal, x_t, t, x0, eps).item() < 1e-8
        assert diffusion_loss(schedule, prediction, loss, ideal + 0.5, x_t, t, x0, eps).item() > 1e-6


def test_schedule_to_moves_every_tensor_and_keeps_float64():
    schedule = make_schedule(DiffusionConfig())
    moved = schedule.to("meta")
    for name in ("betas", "alphas_cumprod", "alphas_cumprod_prev", "posterior_variance"):
        assert getattr(moved, name).device.type == "meta" and getattr(moved, name).dtype == torch.float64
    assert moved.num_timesteps == schedule.num_timesteps


def test_relative_edm_loss_weighs_each_sample_by_its_base_error(schedule):
    """loss_scale = relative: each sample's masked EDM loss times sigma_data^2 / (base MSE + floor^2), so
    the same fraction of the base's error costs the same on a static sample as on a moving one."""
    from facenhance_cli.diffusion.losses import RELATIVE_FLOOR_RMS, edm_loss
    from facenhance_cli.diffusion.precond import edm_coefficients

    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 3, 8, 8, generator=gen) * 2 - 1
    base_error = torch.tensor([0.5, 0.05]).view(2, 1, 1, 1)  # a big move, a near-static sample
    base = x0 + base_error
    x0_pred = x0 + base_error / 2  # each halves its base's error
    mask = (torch.rand(2, 1, 8, 8, generator=gen) > 0.3).float()
    t, sd = torch.tensor([999, 999]), 0.2
    relative = edm_loss(x0_pred, x0, t, schedule, sd, mask, relative_to=base)
    c_out = edm_coefficients(schedule, t, sd, x0)[2].flatten()
    per_sample = (
        (base_error.flatten() / 2) ** 2
        / c_out**2
        * sd**2
        / (base_error.flatten() ** 2 + RELATIVE_FLOOR_RMS**2)
    )
    assert torch.allclose(relative, per_sample.mean(), rtol=1e-5)
    assert torch.allclose(per_sample[0], per_sample[1], rtol=0.2)  # equal shares of their bases' errors
    plain = edm_loss(x0_pred, x0, t, schedule, sd, mask)  # pooled: the big move is nearly all of it
    pooled = (mask * (x0_pred - x0) ** 2 / c_out.view(2, 1, 1, 1) ** 2).sum() / (mask.sum() * 3)
    assert torch.allclose(plain, pooled, rtol=1e-5)
    x0_pred.requires_grad_(True)
    edm_loss(x0_pred, x0, t, schedule, sd, mask, relative_to=base).backward()
    grad_rms = x0_pred.grad.pow(2).mean(dim=(1, 2, 3)).sqrt()
    assert grad_rms[1] > 5 * grad_rms[0]  # per unit of error, the static sample now pulls harder


def test_relative_loss_needs_a_base():
    from facenhance_cli.config import load_preset
    from facenhance_cli.errors import UsageError

    assert load_preset("small").replace(**{"training.loss_scale": "relative"}).validate()
    with pytest.raises(UsageError, match="loss_scale = 'relative' needs"):
        load_preset("tiny").replace(**{"training.loss_scale": "relative"}).validate()


def test_expression_gate_needs_an_edit_mask_and_a_non_negative_level():
    from facenhance_cli.config import load_preset
    from facenhance_cli.errors import UsageError

    assert load_preset("small").replace(**{"conditioning.edit_gate_levels": 12.0}).validate()
    with pytest.raises(UsageError, match="edit_gate_levels needs unet.use_edit_mask"):
        load_preset("tiny").replace(**{"conditioning.edit_gate_levels": 12.0}).validate()
    with pytest.raises(UsageError, match="edit_gate_levels must be >= 0"):
        load_preset("small").replace(**{"conditioning.edit_gate_levels": -1.0}).validate()


def test_detail_energy_loss_asks_for_the_truths_amount_of_detail_not_its_place():
    """training.detail_weight's term: 0 for an image with the truth's detail energy even where its detail
    sits elsewhere (a shifted texture), > 0 for a blurred one, whose gradient adds detail; weight >= 0."""
    import torch.nn.functional as F

    from facenhance_cli.config import load_preset
    from facenhance_cli.diffusion.losses import detail_energy, detail_energy_loss
    from facenhance_cli.errors import UsageError

    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1
    mask = torch.ones(2, 1, 16, 16)
    shifted = torch.roll(x0, 3, dims=3)  # same texture elsewhere: the same energy (periodic: roll keeps it)
    assert torch.allclose(detail_energy(shifted, mask), detail_energy(x0, mask), rtol=0.05)
    blurred = F.avg_pool2d(F.pad(x0, (1, 1, 1, 1), mode="replicate"), 3, stride=1).requires_grad_(True)
    loss = detail_energy_loss(blurred, x0, mask)
    assert loss > 0.1 and detail_energy_loss(x0, x0, mask) == 0
    loss.backward()
    with torch.no_grad():  # a small step against the gradient makes the blurred image more detailed
        sharper = blurred - 0.01 * blurred.grad / blurred.grad.abs().max()
    assert (detail_energy(sharper, mask) > detail_energy(blurred, mask)).all()
    with pytest.raises(UsageError, match="detail_weight"):
        load_preset("small").replace(**{"training.detail_weight": -1.0}).validate()
    with pytest.raises(UsageError, match="detail_weight needs"):  # only an EDM loss adds the term
        load_preset("tiny").replace(**{"training.detail_weight": 1.0}).validate()


def test_ring_weight_weighs_the_ring_around_the_pasted_face():
    """training.ring_weight scales the loss's weight where the pasted frame is the identity image (the ring
    the edit mask adds around the pasted face), leaves it inside the face, and is refused where it has
    no meaning (no edit mask) or would flip the loss (<= 0)."""
    from facenhance_cli.conditioning import Conditioning
    from facenhance_cli.config import load_preset
    from facenhance_cli.errors import UsageError
    from facenhance_cli.training.step import ring_weighted

    identity = torch.zeros(1, 3, 8, 8)
    pasted = identity.clone()
    pasted[:, :, 2:6, 2:6] = 0.3  # the pasted face
    mask = torch.zeros(1, 1, 8, 8)
    mask[:, :, 1:7, 1:7] = 1.0  # the face grown by 1 px
    cond = Conditioning(identity, torch.zeros(1, 3, 4, 4), pasted_frame=pasted, edit_mask=mask)
    weight = ring_weighted(cond, 4.0)
    assert weight is not None and weight.shape == (1, 1, 8, 8)
    assert (weight[:, :, 2:6, 2:6] == 1).all()  # inside the face: as before
    assert weight[0, 0, 1, 1] == 4 and weight[0, 0, 6, 3] == 4  # the ring
    assert weight[0, 0, 0, 0] == 0  # outside the edit mask: still nothing
    assert ring_weighted(cond, 1.0) is cond.edit_weight
    with pytest.raises(UsageError, match="ring_weight"):
        load_preset("small").replace(**{"training.ring_weight": 0.0}).validate()
    with pytest.raises(UsageError, match="ring_weight needs"):
        load_preset("tiny").replace(**{"training.ring_weight": 2.0}).validate()
    assert load_preset("small").replace(**{"training.ring_weight": 4.0}).validate()
