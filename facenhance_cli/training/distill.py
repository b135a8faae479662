"""Distillation: a student trained to reproduce, in its own (fewer) sampler steps, what a teacher model
samples from the same noise and conditioning (Luhman & Luhman 2021, "Knowledge distillation in iterative
generative models": a student regressed on the teacher's deterministic samples).

Both samples start from the same x_T; the student's own sampler (its config's `sampling`, usually one DDIM
step) runs with gradients, the teacher's without. The loss is the squared error over the edit region, where
a gated EDM model can change anything at all (elsewhere both are the base, exactly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from facenhance_cli.checkpoint import LoadedModel
from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import FacenhanceConfig
from facenhance_cli.diffusion.denoiser import NetworkForward, make_denoiser
from facenhance_cli.diffusion.samplers import get_sampler, options_for
from facenhance_cli.diffusion.schedule import Schedule
from facenhance_cli.errors import UsageError


@dataclass(frozen=True)
class Teacher:
    """The model whose samples a distillation run reproduces (EMA weights, frozen)."""

    network: torch.nn.Module
    config: FacenhanceConfig
    source: str  # where it came from, for messages and the student's meta


def teacher_from(model: LoadedModel) -> Teacher:
    """A frozen teacher from a loaded model."""
    model.network.eval().requires_grad_(False)
    return Teacher(model.network, model.config, str(model.path))


def check_teacher(teacher: Teacher, student: FacenhanceConfig) -> None:
    """The student must read the same conditioning and schedule as its teacher (its network may differ)."""
    t, s = teacher.config, student
    if t.sampling.eta != 0 or t.sampling.sampler != "ddim" or t.sampling.strength != 1:
        raise UsageError(
            f"--teacher {teacher.source}: distillation needs a deterministic teacher sampler "
            "(ddim, eta 0, strength 1)"
        )
    checks = {
        "diffusion": t.diffusion == s.diffusion,
        "conditioning": t.conditioning == s.conditioning,
        "unet inputs": t.unet.stacked_fields == s.unet.stacked_fields
        and t.unet.image_size == s.unet.image_size,
        "encoder.low_size": t.encoder.low_size == s.encoder.low_size,
    }
    differ = [name for name, same in checks.items() if not same]
    if differ:
        raise UsageError(
            f"--teacher {teacher.source} reads other inputs than this run ({', '.join(differ)} differ)"
        )
    # As many steps as the teacher is a distillation too when the student's network is another (smaller) one.
    fewer = s.sampling.steps < t.sampling.steps or (s.sampling.steps == t.sampling.steps and s.unet != t.unet)
    if s.sampling.sampler != "ddim" or s.sampling.strength != 1 or not fewer:
        raise UsageError(
            f"the student samples in {s.sampling.steps} steps, the teacher in {t.sampling.steps} with the same "
            "network: give the student fewer (--set sampling.steps=1) or another network (--set unet.*)"
        )


def sample_x0(
    network: NetworkForward,
    config: FacenhanceConfig,
    schedule: Schedule,
    cond: Conditioning,
    x_start: torch.Tensor,
    generators: Sequence[torch.Generator],
    autocast_dtype: torch.dtype | None,
) -> torch.Tensor:
    """(B,3,S,S) x0 sampled by `config`'s own sampler from pure noise `x_start` (gradients flow if enabled)."""
    denoiser = make_denoiser(network, config, schedule, autocast_dtype)
    options = options_for(config.sampling)
    options.pop("strength", None)  # SDEdit is the recurrent loop's; check_teacher keeps both at 1
    return get_sampler(config.sampling.sampler)(denoiser, x_start, schedule, cond, generators, **options)


def distill_loss(
    student_x0: torch.Tensor, teacher_x0: torch.Tensor, edit_mask: torch.Tensor | None
) -> torch.Tensor:
    """Scalar: mean squared difference over the edit region (every pixel without a mask)."""
    squared = (student_x0.float() - teacher_x0.float()) ** 2  # (B, 3, S, S)
    if edit_mask is None:
        return squared.mean()
    return (edit_mask * squared).sum() / (edit_mask.sum() * squared.shape[1]).clamp(min=1.0)
