"""The one checkpoint format: a format version, the full config, EMA weights, optional training state.

Only tensors and plain JSON values are stored, so `torch.load(path, weights_only=True)` always works and
`load_for_inference` rebuilds the model from the file alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from facenhance_cli.config import FacenhanceConfig
from facenhance_cli.errors import CheckpointError, UsageError
from facenhance_cli.fileio import atomic_path

FORMAT_NAME = "facenhance-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(
    path: str | os.PathLike[str],
    config: FacenhanceConfig,
    ema_state: dict[str, torch.Tensor],
    meta: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write a checkpoint atomically (temporary file, then rename). `half` stores float weights as fp16."""
    ema = {k: v.detach().to("cpu", copy=True) for k, v in ema_state.items()}
    if half:
        ema = {k: v.half() if v.is_floating_point() else v for k, v in ema.items()}
    payload: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "ema": ema,
        # A JSON round trip keeps meta to plain values (a TorchVersion or numpy float would break weights_only).
        "meta": json.loads(json.dumps(meta or {}, default=str)),
    }
    if training_state is not None:
        payload["training"] = training_state
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint (weights_only); a foreign or newer file is a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch.load raises many types (KeyError, UnpicklingError...) on foreign files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{path} is not a facenhance checkpoint (torch.load failed with {type(exc).__name__}: {first[:120]})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is not a facenhance checkpoint (no '{FORMAT_NAME}' header)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}, newer than this facenhance reads ({FORMAT_VERSION}): "
            "upgrade facenhance"
        )
    return payload


def checkpoint_config(payload: dict[str, Any], path: str | os.PathLike[str] = "") -> FacenhanceConfig:
    """The config stored in a checkpoint payload."""
    try:
        return FacenhanceConfig.from_dict(payload["config"]).validate()
    except (UsageError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: the config stored in the checkpoint is invalid ({exc})") from None


@dataclass
class LoadedModel:
    """What `enhance` needs: the network (EMA weights, eval mode), its config and the checkpoint's meta."""

    network: torch.nn.Module
    config: FacenhanceConfig
    meta: dict[str, Any]
    path: Path


def load_for_inference(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the network from the file alone and load its EMA weights (float32)."""
    from facenhance_cli.nn.unet import build_network

    payload = read_checkpoint(path)
    config = checkpoint_config(payload, path)
    network = build_network(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["ema"].items()}
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the stored config ({str(exc)[:160]})") from None
    network.eval().requires_grad_(False).to(device)
    return LoadedModel(network, config, dict(payload.get("meta", {})), Path(path))


def export_for_inference(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    half: bool = True,
    sampling: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """An inference-only copy of a checkpoint: EMA weights (fp16 with `half`), no training state.

    `sampling` overrides the recommended sampler / steps / eta stored with the model; `meta` adds to its
    metadata (e.g. what it was trained on), so `facenhance models` can show it.
    """
    payload = read_checkpoint(source)
    config = checkpoint_config(payload, source)
    if sampling:
        config = config.replace(**{f"sampling.{k}": v for k, v in sampling.items()}).validate()
    merged = {**payload.get("meta", {}), **(meta or {})}
    return save_checkpoint(target, config, payload["ema"], merged, half=half)
