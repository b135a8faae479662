"""Samplers and the recurrent loop: DDIM/DDPM identities, trailing spacing, batch independence."""

from __future__ import annotations

import pytest
import torch

from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import ConditioningConfig, DiffusionConfig
from facenhance_cli.diffusion.noise import frame_generator
from facenhance_cli.diffusion.recurrent import generate_frame, generate_video
from facenhance_cli.diffusion.samplers import (
    ddim,
    ddim_timesteps,
    ddpm,
    get_sampler,
    karras_timesteps,
    sdedit_start,
)
from facenhance_cli.diffusion.schedule import make_schedule, xprev_target

SCHEDULE = make_schedule(DiffusionConfig(num_timesteps=50))


def analytic_denoiser(target: torch.Tensor):
    """The ideal denoiser when the data is a single image `target`: x0 = target, eps from x_t."""

    def denoise(x_t, t, cond):
        abar = SCHEDULE.alphas_cumprod[t].reshape(-1, 1, 1, 1).float()
        x0 = target.expand_as(x_t)
        return x0, (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()

    return denoise


def test_trailing_timesteps_start_at_T_minus_1():
    assert ddim_timesteps(1000, 10) == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert ddim_timesteps(1000, 1000) == list(range(999, -1, -1))
    assert ddim_timesteps(1000, 1) == [999]
    with pytest.raises(ValueError):
        ddim_timesteps(1000, 0)


@pytest.mark.parametrize("num_timesteps", [50, 100, 1000])
def test_trailing_timesteps_have_exactly_the_steps_asked_for(num_timesteps):
    for steps in range(1, num_timesteps + 1):
        ts = ddim_timesteps(num_timesteps, steps)
        assert len(ts) == steps and ts[0] == num_timesteps - 1 and ts[-1] >= 0
        assert all(a > b for a, b in zip(ts, ts[1:], strict=False))


def test_ddim_eta1_all_steps_equals_ddpm_with_same_noise():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, 4, 4, generator=gen) * 2 - 1

    def noisy_denoiser(x_t, t, cond):
        # Not the ideal denoiser, so the two samplers really have to agree; eps is consistent with
        # (x_t, x0), as make_denoiser always returns it.
        abar = SCHEDULE.alphas_cumprod[t].reshape(-1, 1, 1, 1).float()
        x0 = torch.tanh(x_t * 0.3 + target)
        return x0, (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()

    x_T = torch.randn(2, 3, 4, 4, generator=gen)
    out_ddim = ddim(
        noisy_denoiser, x_T, SCHEDULE, {}, [frame_generator(1, 0), frame_generator(2, 0)], steps=50, eta=1.0
    )
    out_ddpm = ddpm(noisy_denoiser, x_T, SCHEDULE, {}, [frame_generator(1, 0), frame_generator(2, 0)])
    torch.testing.assert_close(out_ddim, out_ddpm, atol=1e-5, rtol=0)
    out_other = ddpm(noisy_denoiser, x_T, SCHEDULE, {}, [frame_generator(3, 0), frame_generator(4, 0)])
    assert (out_other - out_ddpm).abs().max() > 1e-3


def test_ddim_stride1_eta0_reproduces_the_papers_algorithm():
    """Stride-1 DDIM with eta 0 is the paper's x_{t-1} <- model(...) loop (Algorithms 2-3)."""
    gen = torch.Generator().manual_seed(5)
    target = torch.rand(1, 3, 4, 4, generator=gen) * 2 - 1
    x_T = torch.randn(1, 3, 4, 4, generator=gen)

    def wobbly(x_t, t, cond):
        return torch.tanh(x_t + target), 0.9 * x_t

    # The paper's loop, written independently: the network's x_{t-1} is sqrt(abar_{t-1}) x0 + sqrt(1-abar_{t-1}) eps.
    x = x_T.double()
    for t in range(49, -1, -1):
        tt = torch.tensor([t])
        x0, eps = wobbly(x.float(), tt, {})
        x = xprev_target(SCHEDULE, x0.double(), tt, eps.double())
    out = ddim(wobbly, x_T, SCHEDULE, {}, [frame_generator(0, 0)], steps=50, eta=0.0)
    torch.testing.assert_close(out, x.float(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("sampler,options", [("ddim", {"steps": 5}), ("ddim", {"steps": 50}), ("ddpm", {})])
def test_samplers_recover_a_single_image_with_the_ideal_denoiser(sampler, options):
    target = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(9)) * 2 - 1
    x_T = torch.randn(1, 3, 4, 4)
    out = get_sampler(sampler)(
        analytic_denoiser(target), x_T, SCHEDULE, {}, [frame_generator(0, 0)], **options
    )
    torch.testing.assert_close(out, target, atol=1e-4, rtol=0)


class RecordingDenoiser:
    """A stub that records the conditioning of every call and returns a frame-dependent x0."""

    def __init__(self):
        self.calls = []

    def __call__(self, x_t, t, cond):
        self.calls.append({k: v.clone() for k, v in vars(cond).items() if v is not None})
        # x0 = the low frame's mean value broadcast: lets the test tell frames apart.
        x0 = cond.low_frame.mean(dim=(1, 2, 3), keepdim=True).expand_as(x_t)
        return x0, torch.zeros_like(x_t)


def test_recurrent_loop_feeds_identity_then_previous_generated_frame():
    identity = torch.full((1, 3, 8, 8), 0.25)
    lows = [torch.full((1, 3, 4, 4), v) for v in (0.1, -0.3, 0.7)]
    stub = RecordingDenoiser()
    frames = list(
        generate_video(
            stub,
            ddim,
            SCHEDULE,
            [Conditioning(identity, low) for low in lows],
            seeds=[0],
            prev_noise=ConditioningConfig(prev_noise_std=0.0),
            sampler_options={"steps": 2},
        )
    )
    assert len(frames) == 3 and len(stub.calls) == 6
    torch.testing.assert_close(stub.calls[0]["prev_frame"], identity)  # frame 0: the identity image
    torch.testing.assert_close(stub.calls[2]["prev_frame"], frames[0])  # frame 1: generated frame 0
    torch.testing.assert_close(stub.calls[4]["prev_frame"], frames[1])
    for call in stub.calls:
        torch.testing.assert_close(call["identity_image"], identity)
    torch.testing.assert_close(frames[1], torch.full_like(frames[1], -0.3))


def test_prev_frame_noise_once_per_frame_or_every_step():
    identity = torch.zeros(1, 3, 8, 8)
    low = torch.zeros(1, 3, 4, 4)
    per_frame, per_step = RecordingDenoiser(), RecordingDenoiser()
    cond = Conditioning(identity, low, prev_frame=identity)
    generate_frame(per_frame, ddim, SCHEDULE, cond, [0], [0], ConditioningConfig(1.0, False), {"steps": 3})
    generate_frame(per_step, ddim, SCHEDULE, cond, [0], [0], ConditioningConfig(1.0, True), {"steps": 3})
    first = per_frame.calls[0]["prev_frame"]
    assert 0.8 < first.std().item() < 1.2  # z ~ N(0, 1) on the previous frame
    assert all(torch.equal(c["prev_frame"], first) for c in per_frame.calls)
    assert not torch.equal(per_step.calls[0]["prev_frame"], per_step.calls[1]["prev_frame"])


def test_result_does_not_depend_on_batch_composition():
    stub = lambda x_t, t, c: (torch.tanh(x_t + c.prev_frame), x_t * 0.5)  # noqa: E731
    identity = torch.zeros(2, 3, 8, 8)
    low = torch.zeros(2, 3, 4, 4)
    options = {"steps": 4, "eta": 1.0}
    cond = Conditioning(identity, low, prev_frame=identity)
    pair = generate_frame(stub, ddim, SCHEDULE, cond, [7, 8], [3, 3], ConditioningConfig(), options)
    alone_cond = Conditioning(identity[:1], low[:1], prev_frame=identity[:1])
    alone = generate_frame(stub, ddim, SCHEDULE, alone_cond, [7], [3], ConditioningConfig(), options)
    torch.testing.assert_close(pair[:1], alone)
    assert not torch.allclose(pair[0], pair[1])


def test_ddim_strength_starts_from_the_noised_pasted_frame():
    """SDEdit: the first call sees sqrt(abar_s) x_init + sqrt(1 - abar_s) x_T at s = strength T - 1."""
    x_T = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    pasted = torch.rand(1, 3, 4, 4) * 2 - 1
    identity = torch.zeros(1, 3, 4, 4)
    seen: list[tuple[int, torch.Tensor]] = []

    def recording(x_t, t, cond):
        seen.append((int(t[0]), x_t.clone()))
        return cond.pasted_frame, torch.zeros_like(x_t)

    cond = Conditioning(identity, identity, pasted_frame=pasted)
    gens = [torch.Generator().manual_seed(0)]
    x_start, t_start = sdedit_start(SCHEDULE, 0.4, cond.base, x_T)
    out = ddim(recording, x_start, SCHEDULE, cond, gens, steps=3, t_start=t_start)
    abar = SCHEDULE.alphas_cumprod.double()
    assert [t for t, _ in seen] == ddim_timesteps(20, 3) == [19, 12, 6]
    expected = abar[19].sqrt() * pasted.double() + (1 - abar[19]).sqrt() * x_T.double()
    torch.testing.assert_close(seen[0][1].double(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(out, pasted)  # x0 = pasted, eps = 0 at every step
    x_start, t_start = sdedit_start(SCHEDULE, 1.0, cond.base, x_T)
    assert t_start == 49 and x_start is x_T
    full = ddim(recording, x_T, SCHEDULE, cond, gens, steps=3)
    assert seen[3][0] == 49 and torch.equal(seen[3][1], x_T) and torch.equal(full, out)
    with pytest.raises(ValueError, match="strength"):
        sdedit_start(SCHEDULE, 0.0, cond.base, x_T)
    with pytest.raises(ValueError, match="t_start"):
        ddim(recording, x_T, SCHEDULE, cond, gens, steps=3, t_start=50)


def test_karras_spacing_is_descending_distinct_and_denser_at_low_noise():
    schedule = make_schedule(DiffusionConfig(num_timesteps=1000))
    for steps in (1, 2, 4, 8, 50, 200, 1000):
        ts = karras_timesteps(schedule, 999, steps)
        assert len(ts) == steps and ts[0] == 999 and ts[-1] >= 0
        assert all(a > b for a, b in zip(ts, ts[1:], strict=False))
    karras, trailing = karras_timesteps(schedule, 999, 8), ddim_timesteps(1000, 8)
    assert sum(t < 250 for t in karras) > sum(t < 250 for t in trailing)
    assert karras_timesteps(schedule, 999, 1000) == list(range(999, -1, -1))
    target = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(9)) * 2 - 1
    out = ddim(
        analytic_denoiser(target),
        torch.randn(1, 3, 4, 4),
        SCHEDULE,
        {},
        [frame_generator(0, 0)],
        steps=6,
        spacing="karras",
    )
    torch.testing.assert_close(out, target, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="spacing"):
        ddim(
            analytic_denoiser(target),
            torch.randn(1, 3, 4, 4),
            SCHEDULE,
            {},
            [frame_generator(0, 0)],
            steps=6,
            spacing="even",
        )


def test_shared_noise_starts_every_frame_from_the_same_x_T():
    seen = []

    def recording(x_t, t, cond):
        seen.append(x_t.clone())
        return torch.zeros_like(x_t), x_t

    cond = Conditioning(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 4, 4))
    for shared in (True, False):
        seen.clear()
        for n in (0, 5):
            generate_frame(
                recording, ddim, SCHEDULE, cond, [3], [n], sampler_options={"steps": 1}, shared_noise=shared
            )
        assert torch.equal(seen[0], seen[1]) == shared
