"""What a training run is before its first step: options, distributed placement, its config (resolved
against a checkpoint being resumed), the precision it computes in, and its checkpoints."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, cast

import torch

from facenhance_cli import __version__
from facenhance_cli.checkpoint import checkpoint_config, read_checkpoint
from facenhance_cli.config import FacenhanceConfig, Precision, UNetConfig
from facenhance_cli.errors import FacenhanceError, UsageError
from facenhance_cli.training.distill import Teacher
from facenhance_cli.training.logs import LogRecord

# Keys that may change when a run is resumed (how long and how often), unlike the model and optimisation.
RESUME_MUTABLE = {"max_steps", "checkpoint_every", "validate_every", "sample_every", "log_every"}


class TrainingInterrupted(FacenhanceError):
    """Ctrl-C during training: the checkpoint was saved, the run can be resumed."""

    exit_code = 130


@dataclass
class TrainOptions:
    """What the `train` command resolved from its arguments."""

    data_dir: Path
    run_dir: Path
    config: FacenhanceConfig
    config_explicit: bool = True  # False: the user named no preset/config, so a resume takes the checkpoint's
    resume: bool = False
    device: str = "cpu"
    precision: Precision = "fp32"  # bf16 autocast runs on the CPU too; fp16 needs CUDA
    compile: bool = False
    workers: int = 1  # threads decoding clips when the data is loaded
    progress: Callable[[LogRecord], None] | None = None  # called with each log record
    overrides: dict[str, object] = field(default_factory=dict)  # dotted training.* keys applied on resume
    init_state: dict[str, torch.Tensor] | None = None  # --init: a new run starts from these weights
    init_source: str = ""  # where init_state came from, for messages
    init_unet: UNetConfig | None = None  # the network init_state was trained as (nn/transplant.py)
    max_seconds: float | None = None  # --max-minutes: stop (saving last.pt and final.pt) after this long
    teacher: Teacher | None = None  # --teacher: the model a distillation run (training.objective) reproduces


@dataclass
class DistInfo:
    """torch.distributed placement (world_size 1 when not under torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> tuple[DistInfo, str]:
    """Join the process group when started by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    import torch.distributed as dist

    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.startswith("cuda"):
        device = f"cuda:{info.local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return info, device


def _flatten(data: dict[str, object], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_mismatch(saved: FacenhanceConfig, requested: FacenhanceConfig) -> str | None:
    """The first key (other than how long/how often, and the sampling defaults, which training does not use)
    where a resume's config differs from the checkpoint's."""
    a, b = _flatten(saved.to_dict()), _flatten(requested.to_dict())
    for key in sorted(a):
        if key.split(".")[-1] in RESUME_MUTABLE or key == "name" or key.startswith("sampling."):
            continue
        if a[key] != b.get(key):
            return f"{key}: checkpoint has {a[key]!r}, asked for {b.get(key)!r}"
    return None


class TrainingState(TypedDict):
    """The "training" entry of RUN/last.pt (`Trainer.save_last`): what a resume needs besides the EMA."""

    model: dict[str, torch.Tensor]  # the network's own weights
    optimizer: dict[str, object]  # torch.optim.Optimizer.state_dict()
    scaler: dict[str, object] | None  # GradScaler.state_dict() under fp16, else None
    step: int
    best_val: float | None  # the best validation loss so far
    torch_rng: torch.Tensor  # torch.get_rng_state() (only dropout draws from it)


class ResumeCheckpoint(TypedDict):
    """RUN/last.pt as `save_checkpoint` writes it with a training state."""

    format: str
    format_version: int
    config: dict[str, object]  # FacenhanceConfig.to_dict()
    ema: dict[str, torch.Tensor]
    meta: dict[str, object]  # `run_meta`
    training: TrainingState


def resume_payload(last_path: Path, resume: bool) -> ResumeCheckpoint | None:
    """RUN/last.pt's contents when there is one to resume (an error when --resume finds none)."""
    if not last_path.is_file():
        if resume:
            raise UsageError(f"--resume: no checkpoint at {last_path}")
        return None
    payload = read_checkpoint(last_path)
    if "training" not in payload:
        raise UsageError(f"{last_path} holds no training state (an inference-only checkpoint)")
    return cast(ResumeCheckpoint, payload)  # read_checkpoint checked the format; the keys are ours


def resolve_config(
    options: TrainOptions, payload: ResumeCheckpoint | None, last_path: Path
) -> FacenhanceConfig:
    """The run's config: the requested one for a new run; for a resume the checkpoint's, with only what may
    change (how long and how often, sampling defaults, --set overrides) taken from the command line."""
    requested = options.config
    if payload is None:
        return requested.validate()
    saved = checkpoint_config(dict(payload), last_path)
    if not options.config_explicit:
        # No preset or config named: the run's own settings, with only what the command line gave.
        return saved.replace(**options.overrides) if options.overrides else saved
    mismatch = config_mismatch(saved, requested)
    if mismatch:
        raise UsageError(
            f"{options.run_dir} holds a run with another config ({mismatch}); "
            "use a new -o RUN folder, or drop --preset/--config/--set to resume it"
        )
    training = {k: v for k, v in requested.to_dict()["training"].items() if k in RESUME_MUTABLE}
    changes = {f"training.{k}": v for k, v in training.items()}
    changes.update({f"sampling.{k}": v for k, v in requested.to_dict()["sampling"].items()})
    return saved.replace(**changes)


def autocast_dtype(precision: Precision, device: str) -> torch.dtype | None:
    """The dtype training autocasts to (None: fp32), with the warning for bf16 on a CPU that emulates it."""
    import logging

    if precision == "fp32":
        return None
    if precision == "fp16" and not device.startswith("cuda"):  # bf16 autocast runs on the CPU too
        raise UsageError(f"--precision fp16 needs a CUDA device; use fp32 or bf16 on {device}")
    from facenhance_cli.accel import slow_bf16_warning

    if warning := slow_bf16_warning(precision, device):
        logging.getLogger("facenhance_cli.training").warning(warning)
    return torch.bfloat16 if precision == "bf16" else torch.float16


def run_meta(
    step: int, options: TrainOptions, device: str, train_clips: int, train_frames: int, world_size: int
) -> dict[str, int | str]:
    """What a checkpoint records about the run that made it (and the teacher of a distilled student)."""
    meta: dict[str, int | str] = {
        "step": step,
        "trained_on": str(options.data_dir),
        "train_clips": train_clips,
        "train_frames": train_frames,
        "device": torch.cuda.get_device_name(device)
        if device.startswith("cuda")
        else platform.processor() or "cpu",
        "world_size": world_size,
        "facenhance_version": __version__,
        "torch_version": str(torch.__version__),
    }
    if options.teacher is not None:
        sampling, source = options.teacher.config.sampling, Path(options.teacher.source)
        # A model's name (a run's checkpoint: run/final): what `enhance --model` takes, not this machine's path.
        name = (
            f"{source.parent.name}/{source.stem}" if source.stem in ("final", "last", "best") else source.stem
        )
        meta["distilled_from"] = f"{name} ({sampling.sampler} {sampling.steps} {sampling.spacing})"
    return meta
