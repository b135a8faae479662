"""Randomness by generators only: one generator per video and frame, so results ignore batch composition."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def frame_generator(seed: int, frame_index: int) -> torch.Generator:
    """A CPU generator for (video seed, frame index): independent streams from numpy's SeedSequence."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(frame_index)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def randn_per_sample(
    shape: Sequence[int], generators: Sequence[torch.Generator], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Standard normal (len(generators), *shape) float32, row i drawn from generators[i] on the CPU."""
    rows = [torch.randn(tuple(shape), generator=g, dtype=torch.float32) for g in generators]
    return torch.stack(rows).to(device)
