"""Randomness by generators only: one generator per video and frame, so results ignore batch composition."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def keyed_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator for (seed, *keys): independent streams from numpy's SeedSequence (seed taken mod 2^32)."""
    entropy = [int(seed) & 0xFFFFFFFF, *(int(k) for k in keys)]
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def frame_generator(seed: int, frame_index: int) -> torch.Generator:
    """A CPU generator for (video seed, frame index)."""
    return keyed_generator(seed, frame_index)


def randn_per_sample(
    shape: Sequence[int], generators: Sequence[torch.Generator], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Standard normal (len(generators), *shape) float32, row i drawn from generators[i] on the CPU."""
    rows = [torch.randn(tuple(shape), generator=g, dtype=torch.float32) for g in generators]
    return torch.stack(rows).to(device)
