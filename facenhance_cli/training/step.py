"""One step of Algorithm 1: the batch at a step (with its keyed randomness), the loss, the EMA update."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import torch
from torch import nn

from facenhance_cli.accel import to_device
from facenhance_cli.conditioning import Conditioning, collate
from facenhance_cli.config import FacenhanceConfig, TrainingConfig
from facenhance_cli.data import FrameDataset, batch_positions, to_tensor
from facenhance_cli.diffusion.losses import detail_energy_loss, diffusion_loss, edm_loss
from facenhance_cli.diffusion.noise import keyed_generator
from facenhance_cli.diffusion.schedule import Schedule


def sample_generator(seed: int, step: int, position: int) -> torch.Generator:
    """Generator of one training sample: keyed by (seed, step, position in the global batch)."""
    return keyed_generator(seed, step, position, 0x7A11)


@dataclass(frozen=True)
class Batch:
    """A rank's share of a global batch: targets, their conditioning (clean previous frame) and the
    per-sample randomness of Algorithm 1."""

    x0: torch.Tensor  # (B, 3, S, S) target frames in [-1, 1]
    cond: Conditioning
    t: torch.Tensor  # (B,) int steps
    eps: torch.Tensor  # (B, 3, S, S) the noise of x_t
    z: torch.Tensor  # (B, 3, S, S) the noise of the previous frame


def draw_batch(
    data: FrameDataset,
    tc: TrainingConfig,
    num_timesteps: int,
    step: int,
    ranks: range,
    device: str,
    pool: Executor | None = None,
) -> Batch:
    """The samples `ranks` (positions in the global batch) of the batch at `step`, each with t, eps, z,
    flip and colour gain drawn from its own generator, in that order. With a `pool` the samples' images
    (paste, gate, aligned target: OpenCV work that releases the GIL) are built on its threads; the
    randomness is drawn first, in order, so a batch does not depend on the pool."""
    positions = batch_positions(len(data), tc.batch_size, step, tc.seed)
    draws, ts, eps, zs = [], [], [], []
    size = data.image_size
    for k in ranks:
        gen = sample_generator(tc.seed, step, k)
        ts.append(int(torch.randint(tc.min_timestep, num_timesteps, (1,), generator=gen)))
        eps.append(torch.randn(3, size, size, generator=gen))
        zs.append(torch.randn(3, size, size, generator=gen))
        flip = tc.flip and bool(torch.rand(1, generator=gen) < 0.5)
        gain = None
        if tc.color_jitter > 0:  # drawn last, so runs without it keep their random streams
            gain = 1 + tc.color_jitter * (2 * torch.rand(3, generator=gen).numpy() - 1)
        draws.append((positions[k], flip, gain))
    if pool is not None:
        samples = list(pool.map(lambda draw: data.sample(*draw), draws))
    else:
        samples = [data.sample(*draw) for draw in draws]
    return Batch(
        x0=to_device(to_tensor([s.target for s in samples]), device),
        cond=collate([s.inputs for s in samples], device),
        t=to_device(torch.tensor(ts), device),
        eps=to_device(torch.stack(eps), device),
        z=to_device(torch.stack(zs), device),
    )


def training_loss(
    config: FacenhanceConfig,
    schedule: Schedule,
    output: torch.Tensor,
    x_t: torch.Tensor,
    batch: Batch,
) -> torch.Tensor:
    """Scalar loss of a model output (its parameterization) for the batch's true (x0, eps)."""
    d, cond = config.diffusion, batch.cond
    if d.preconditioning == "edm":
        base = cond.base if config.training.loss_scale == "relative" else None
        weight = ring_weighted(cond, config.training.ring_weight)
        loss = edm_loss(output, batch.x0, batch.t, schedule, d.sigma_data, weight, relative_to=base)
        if config.training.detail_weight > 0:
            loss = loss + config.training.detail_weight * detail_energy_loss(
                output, batch.x0, cond.edit_weight
            )
        return loss
    return diffusion_loss(schedule, d.prediction, d.loss, output, x_t, batch.t, batch.x0, batch.eps)


def ring_weighted(cond: Conditioning, ring_weight: float) -> torch.Tensor | None:
    """(B, 1, S, S) the edit weight with the ring around the pasted face (where the pasted frame is the
    identity image, to half a level) scaled by `ring_weight` (experiments row 47: expr is lost there)."""
    if ring_weight == 1 or cond.edit_weight is None or cond.pasted_frame is None:
        return cond.edit_weight
    change = (cond.pasted_frame - cond.identity_image).abs().amax(dim=1, keepdim=True)  # (B, 1, S, S)
    ring = (change < 0.5 / 127.5).float()  # 1 where no low face was pasted
    return cond.edit_weight * (1 + (ring_weight - 1) * ring)


@torch.no_grad()
def update_ema(ema: nn.Module, network: nn.Module, tc: TrainingConfig, step: int) -> None:
    """EMA of the weights (with warm-up: decay min(ema_decay, (1 + step) / (10 + step))); buffers copied."""
    decay = tc.ema_decay
    if tc.ema_warmup:
        decay = min(decay, (1 + step) / (10 + step))
    # One fused update over every tensor (one kernel launch per group on a GPU, not one per tensor).
    ema_params: list[torch.Tensor] = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in network.parameters()], 1 - decay)
    for ema_b, b in zip(ema.buffers(), network.buffers(), strict=True):
        ema_b.copy_(b)
