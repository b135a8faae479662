"""Start a patch-folding network from a finer one's weights: the levels both have, shifted by the fold.

A network with `unet.patch_size = 2 p` whose levels are a finer network's (`patch_size = p`) levels 1..
(the same widths) computes at 192 / 2p what the finer one computes at its level 1: its input and output
layers are new, everything between is the finer network's. Distilling such a student from the finer
teacher then starts from the teacher's own trunk rather than from noise.
"""

from __future__ import annotations

import dataclasses
import math
import re

import torch

from facenhance_cli.config import UNetConfig

# Key prefixes counted from the finest level (shifted by the fold) and from the coarsest (kept as they are).
_FROM_FINEST = re.compile(r"^(down|downsample|token_proj)\.(\d+)\.(.*)$")
_FRESH = ("input_conv.", "out.")  # the input and output layers see other tensors: never transplanted


def folded_levels(source: UNetConfig, target: UNetConfig) -> int | None:
    """How many of `source`'s finest levels `target`'s larger patch folds away; None when its levels are
    not `source`'s remaining ones (other widths, attention, blocks or inputs)."""
    ratio = target.patch_size / source.patch_size
    shift = round(math.log2(ratio)) if ratio >= 2 else 0
    if shift < 1 or 2**shift != ratio:
        return None
    same = (
        source.level_channels[shift:] == target.level_channels
        and [lvl - shift for lvl in source.attention_levels] == list(target.attention_levels)
        and source.base_channels * source.time_embed_mult == target.base_channels * target.time_embed_mult
        and (source.num_res_blocks, source.head_channels, source.groups, source.stacked_fields)
        == (target.num_res_blocks, target.head_channels, target.groups, target.stacked_fields)
    )
    return shift if same else None


def _source_key(key: str, shift: int) -> str | None:
    """The source's name for a target parameter, None for the layers that start fresh."""
    if key.startswith(_FRESH):
        return None
    match = _FROM_FINEST.match(key)
    if match is None:  # up, upsample (counted from the coarsest level), middle, encoder, time embedding
        return key
    prefix, level, rest = match.groups()
    return f"{prefix}.{int(level) + shift}.{rest}"


def transplant_state(
    source_state: dict[str, torch.Tensor],
    source: UNetConfig,
    target: UNetConfig,
    target_state: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor] | None:
    """`target_state` with every tensor the source has for it (module docstring); None when it cannot be."""
    shift = folded_levels(source, target)
    if shift is None:
        return None
    merged = {}
    for key, fresh in target_state.items():
        source_key = _source_key(key, shift)
        tensor = source_state.get(source_key) if source_key is not None else None
        if tensor is not None and tensor.shape != fresh.shape:
            return None
        merged[key] = fresh if tensor is None else tensor
    return merged


def widen_inputs(
    source_state: dict[str, torch.Tensor],
    source: UNetConfig,
    target: UNetConfig,
    target_state: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor] | None:
    """`source_state` for a network that stacks more images after the source's (e.g. `use_flow_frame`): the
    input layer's weights for the new channels start at 0, so the widened network computes what the source
    did; None when the two differ in anything else."""
    fields, extra = source.stacked_fields, target.stacked_fields[len(source.stacked_fields) :]
    if not extra or target.stacked_fields[: len(fields)] != fields or _shape(source) != _shape(target):
        return None
    if set(source_state) != set(target_state):
        return None
    merged = {}
    for key, fresh in target_state.items():
        tensor = source_state[key]
        if key == "input_conv.weight" and tensor.shape[1] < fresh.shape[1]:
            widened = torch.zeros_like(
                fresh
            )  # (out, C_target p^2, 3, 3): pixel-unshuffled channels, field-major
            widened[:, : tensor.shape[1]] = tensor
            tensor = widened
        if tensor.shape != fresh.shape:
            return None
        merged[key] = tensor
    return merged


def _shape(unet: UNetConfig) -> dict[str, object]:
    """Everything of a network's config but its input switches (`use_*`): what must match to widen it."""
    return {key: value for key, value in dataclasses.asdict(unet).items() if not key.startswith("use_")}
