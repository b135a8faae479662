"""`facenhance train`: Algorithm 1 on prepared data, resumable, observable, DDP-ready.

Every random choice of a training sample (t, eps, z on the previous frame, flip) comes from a generator
keyed by (seed, step, position in the global batch), and the data order from (seed, epoch): so a resumed
run replays exactly the samples an uninterrupted one would see, and N DDP ranks with batch B/N each see
the same samples as one process with batch B.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import platform
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facenhance_cli import __version__
from facenhance_cli.accel import configure_cuda_math, optimizer_options, to_device
from facenhance_cli.checkpoint import checkpoint_config, read_checkpoint, save_checkpoint
from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import FacenhanceConfig, config_to_toml
from facenhance_cli.data import (
    FrameDataset,
    batch_positions,
    conditioning_from_samples,
    read_manifest,
    to_tensor,
    to_uint8,
)
from facenhance_cli.diffusion.denoiser import make_denoiser
from facenhance_cli.diffusion.losses import diffusion_loss
from facenhance_cli.diffusion.noise import keyed_generator
from facenhance_cli.diffusion.precond import edm_loss, model_output
from facenhance_cli.diffusion.recurrent import generate_video
from facenhance_cli.diffusion.samplers import ddim
from facenhance_cli.diffusion.schedule import make_schedule, q_sample
from facenhance_cli.errors import FacenhanceError, InputError, UsageError
from facenhance_cli.fileio import write_text
from facenhance_cli.nn.unet import build_network

log = logging.getLogger(__name__)

# Keys that may change when a run is resumed (how long and how often), unlike the model and optimisation.
RESUME_MUTABLE = {"max_steps", "checkpoint_every", "validate_every", "sample_every", "log_every"}
VALIDATION_SAMPLES = 64
VALIDATION_STEP_KEY = 2**40  # a "step" no training run reaches: validation noise never repeats training noise


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
    precision: str = "fp32"  # fp32 | bf16 | fp16 (the last two on CUDA)
    compile: bool = False
    workers: int = 1  # threads decoding clips when the data is loaded
    progress: Callable[[dict[str, Any]], None] | None = None  # called with each log record
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted training.* keys applied on resume
    init_state: dict[str, torch.Tensor] | None = None  # --init: a new run starts from these weights
    init_source: str = ""  # where init_state came from, for messages


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


def sample_generator(seed: int, step: int, position: int) -> torch.Generator:
    """Generator of one training sample: keyed by (seed, step, position in the global batch)."""
    return keyed_generator(seed, step, position, 0x7A11)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
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


class Trainer:
    """Holds the network, its EMA, the optimiser and the data; `run()` trains to max_steps."""

    def __init__(self, options: TrainOptions) -> None:
        self.options = options
        self.dist, self.device = init_distributed(options.device)
        self.run_dir = Path(options.run_dir)
        self.last_path = self.run_dir / "last.pt"
        resume_payload = self._resume_payload()
        self.config = self._resolve_config(resume_payload)
        self.tc = self.config.training
        if self.tc.batch_size % self.dist.world_size:
            raise UsageError(
                f"batch size {self.tc.batch_size} must be divisible by the {self.dist.world_size} processes"
            )
        self.local_batch = self.tc.batch_size // self.dist.world_size
        configure_cuda_math(self.device)
        self.schedule = make_schedule(self.config.diffusion).to(self.device)
        self.prev_noise_std = self.config.conditioning.prev_noise_std

        self._load_data()

        torch.manual_seed(self.tc.seed)  # initial weights
        # channels_last: convolutions run 1.1-1.4x faster on CPU (oneDNN) and on tensor cores; the state
        # dict is the same tensors, so checkpoints do not depend on it.
        self.network = build_network(self.config).to(self.device)
        self.network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.ema = copy.deepcopy(self.network).eval().requires_grad_(False)
        opt_cls = torch.optim.AdamW if self.tc.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(
            self.network.parameters(),
            lr=self.tc.lr,
            weight_decay=self.tc.weight_decay,
            **optimizer_options(self.device),
        )
        self.autocast_dtype = self._autocast_dtype(options.precision)
        self.scaler = torch.amp.GradScaler("cuda") if options.precision == "fp16" else None
        self.step = 0
        self.best_val: float | None = None
        if resume_payload is not None:
            self._restore(resume_payload)
        elif options.init_state is not None:
            self._initialise(options.init_state, options.init_source)
        self.model: torch.nn.Module = self.network
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(
                self.network, device_ids=[self.dist.local_rank] if self.device.startswith("cuda") else None
            )
        self.forward = torch.compile(self.model) if options.compile else self.model

    def _load_data(self) -> None:
        """The train split (and the test split, for validation) as FrameDatasets with this model's inputs."""
        options = self.options
        entries = read_manifest(options.data_dir)
        train_entries = [e for e in entries if e.split == "train"]
        val_entries = [e for e in entries if e.split == "test"]
        if not train_entries:
            raise InputError(f"no clips in the train split of {options.data_dir}")
        size, low = self.config.unet.image_size, self.config.encoder.low_size
        workers = max(1, options.workers)
        inputs = {
            "pasted": self.config.unet.use_pasted_frame,
            "edit_mask": self.config.unet.use_edit_mask,
            "align_targets": self.tc.align_targets,
            "paste_detail_sigma": self.config.conditioning.paste_detail_sigma,
            "edit_gate_levels": self.config.conditioning.edit_gate_levels,
        }
        self.train_data = FrameDataset(train_entries, size, low, workers=workers, **inputs)
        self.val_data: FrameDataset | None = None
        if val_entries:
            try:
                self.val_data = FrameDataset(val_entries, size, low, workers=workers, **inputs)
            except InputError as exc:
                log.warning("no validation: the test split is unreadable (%s)", exc)
        if self.tc.batch_size > len(self.train_data):
            raise UsageError(
                f"batch size {self.tc.batch_size} is larger than the {len(self.train_data)} training frames"
            )

    # -- setup -------------------------------------------------------------------------------------------
    def _resume_payload(self) -> dict[str, Any] | None:
        if not self.last_path.is_file():
            if self.options.resume:
                raise UsageError(f"--resume: no checkpoint at {self.last_path}")
            return None
        payload = read_checkpoint(self.last_path)
        if "training" not in payload:
            raise UsageError(f"{self.last_path} holds no training state (an inference-only checkpoint)")
        return payload

    def _resolve_config(self, payload: dict[str, Any] | None) -> FacenhanceConfig:
        requested = self.options.config
        if payload is None:
            return requested.validate()
        saved = checkpoint_config(payload, self.last_path)
        if self.options.config_explicit:
            mismatch = config_mismatch(saved, requested)
            if mismatch:
                raise UsageError(
                    f"{self.run_dir} holds a run with another config ({mismatch}); "
                    "use a new -o RUN folder, or drop --preset/--config/--set to resume it"
                )
        if not self.options.config_explicit:
            # No preset or config named: the run's own settings, with only what the command line gave.
            return saved.replace(**self.options.overrides) if self.options.overrides else saved
        training = {k: v for k, v in requested.to_dict()["training"].items() if k in RESUME_MUTABLE}
        changes = {f"training.{k}": v for k, v in training.items()}
        changes.update({f"sampling.{k}": v for k, v in requested.to_dict()["sampling"].items()})
        return saved.replace(**changes)

    def _autocast_dtype(self, precision: str) -> torch.dtype | None:
        if precision == "fp32":
            return None
        if precision == "fp16" and not self.device.startswith("cuda"):  # bf16 autocast runs on the CPU too
            raise UsageError(f"--precision fp16 needs a CUDA device; use fp32 or bf16 on {self.device}")
        from facenhance_cli.accel import slow_bf16_warning

        if warning := slow_bf16_warning(precision, self.device):
            log.warning(warning)
        return torch.bfloat16 if precision == "bf16" else torch.float16

    def _restore(self, payload: dict[str, Any]) -> None:
        state = payload["training"]
        self.network.load_state_dict(state["model"])
        self.ema.load_state_dict(payload["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.best_val = state.get("best_val")
        if state.get("torch_rng") is not None:
            torch.set_rng_state(state["torch_rng"])

    def _initialise(self, state: dict[str, torch.Tensor], source: str) -> None:
        """--init: the network and its EMA start from `state` (a fine-tune); optimiser and step start fresh."""
        from facenhance_cli.checkpoint import state_mismatch

        mismatch = state_mismatch(self.network, state)
        if mismatch:
            raise UsageError(f"--init {source} does not fit this run's config: {mismatch}")
        self.network.load_state_dict(state)
        self.ema.load_state_dict(state)

    # -- one step ----------------------------------------------------------------------------------------
    def _batch(self, step: int) -> tuple[torch.Tensor, Conditioning, dict[str, torch.Tensor]]:
        """This rank's share of the global batch at `step`: x0 (B,3,S,S), its conditioning (clean previous
        frame) and its per-sample randomness t (B,), eps and z (B,3,S,S)."""
        positions = batch_positions(len(self.train_data), self.tc.batch_size, step, self.tc.seed)
        mine = range(self.dist.rank, self.tc.batch_size, self.dist.world_size)
        samples, ts, eps, zs = [], [], [], []
        size = self.config.unet.image_size
        for k in mine:
            gen = sample_generator(self.tc.seed, step, k)
            ts.append(int(torch.randint(0, self.schedule.num_timesteps, (1,), generator=gen)))
            eps.append(torch.randn(3, size, size, generator=gen))
            zs.append(torch.randn(3, size, size, generator=gen))
            flip = self.tc.flip and bool(torch.rand(1, generator=gen) < 0.5)
            gain = None
            if self.tc.color_jitter > 0:  # drawn last, so runs without it keep their random streams
                gain = 1 + self.tc.color_jitter * (2 * torch.rand(3, generator=gen).numpy() - 1)
            samples.append(self.train_data.sample(positions[k], flip, gain))
        x0 = to_device(to_tensor([s["high"] for s in samples]), self.device)
        noise = {
            "t": to_device(torch.tensor(ts), self.device),
            "eps": to_device(torch.stack(eps), self.device),
            "z": to_device(torch.stack(zs), self.device),
        }
        return x0, conditioning_from_samples(samples, self.device), noise

    def _lr(self, step: int) -> float:
        if self.tc.warmup_steps and step < self.tc.warmup_steps:
            return self.tc.lr * (step + 1) / self.tc.warmup_steps
        return self.tc.lr

    def train_step(self) -> dict[str, Any]:
        """Algorithm 1: x_t from (x0, eps, t), the model sees (x_t, I_id, f_low, f_prev + z); loss to the target."""
        self.network.train()
        x0, cond, noise = self._batch(self.step)
        t = noise["t"]
        x_t = q_sample(self.schedule, x0, t, noise["eps"])
        assert cond.prev_frame is not None  # the dataset always gives the previous frame
        cond = cond.replace(prev_frame=cond.prev_frame + self.prev_noise_std * noise["z"])
        lr = self._lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(
            self.device.split(":")[0], dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
        ):
            output = model_output(self.forward, self.config, self.schedule, x_t, t, cond)
        loss = self.loss(output.float(), x_t, t, x0, noise["eps"], cond)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        clip = self.tc.grad_clip if self.tc.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self._update_ema()
        self.step += 1
        loss_value = loss.detach()
        if self.dist.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(
                loss_value, op=dist.ReduceOp.AVG if self.device.startswith("cuda") else dist.ReduceOp.SUM
            )
            if not self.device.startswith("cuda"):
                loss_value = loss_value / self.dist.world_size
        # Tensors, not floats: reading them waits for the device, so run() reads them only when it logs
        # or saves (checked finite then, before any checkpoint can hold a diverged model).
        return {"loss": loss_value, "lr": lr, "grad_norm": grad_norm.detach()}

    def _read_stats(self, stats: dict[str, Any]) -> dict[str, Any]:
        """Floats of a train_step's tensors; a non-finite loss stops the run before anything is saved."""
        values = {k: float(v) if isinstance(v, torch.Tensor) else v for k, v in stats.items()}
        if not math.isfinite(values["loss"]):
            raise FacenhanceError(f"loss became {values['loss']} by step {self.step}: lower --lr or use fp32")
        return values

    def loss(
        self,
        output: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        x0: torch.Tensor,
        eps: torch.Tensor,
        cond: Conditioning,
    ) -> torch.Tensor:
        """Scalar loss of a model output (its parameterization) for the true (x0, eps)."""
        d = self.config.diffusion
        if d.preconditioning == "edm":
            base = cond.base if self.tc.loss_scale == "relative" else None
            return edm_loss(output, x0, t, self.schedule, d.sigma_data, cond.edit_weight, relative_to=base)
        return diffusion_loss(self.schedule, d.prediction, d.loss, output, x_t, t, x0, eps)

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.tc.ema_decay
        if self.tc.ema_warmup:
            decay = min(decay, (1 + self.step) / (10 + self.step))
        # One fused update over every tensor (one kernel launch per group on a GPU, not one per tensor).
        ema_params: list[torch.Tensor] = list(self.ema.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in self.network.parameters()], 1 - decay)
        for ema_b, b in zip(self.ema.buffers(), self.network.buffers(), strict=True):
            ema_b.copy_(b)

    # -- evaluation --------------------------------------------------------------------------------------
    @torch.no_grad()
    def validation_loss(self) -> float | None:
        """Mean loss of the EMA network on a fixed subset of the test split with fixed t and noise."""
        if self.val_data is None:
            return None
        n = min(VALIDATION_SAMPLES, len(self.val_data))
        positions = np.linspace(0, len(self.val_data) - 1, n).round().astype(int)
        size = self.config.unet.image_size
        total = 0.0
        for start in range(0, n, self.tc.batch_size):
            chunk = positions[start : start + self.tc.batch_size]
            samples = [self.val_data.sample(int(p), flip=False) for p in chunk]
            gens = [sample_generator(self.tc.seed, VALIDATION_STEP_KEY, int(p)) for p in chunk]
            # Timesteps spread evenly over [0, T) so the estimate is stable between evaluations.
            t = torch.tensor(
                [int((start + i + 0.5) / n * self.schedule.num_timesteps) for i in range(len(chunk))],
                device=self.device,
            )
            eps = torch.stack([torch.randn(3, size, size, generator=g) for g in gens]).to(self.device)
            z = torch.stack([torch.randn(3, size, size, generator=g) for g in gens]).to(self.device)
            x0 = to_tensor([s["high"] for s in samples]).to(self.device)
            cond = conditioning_from_samples(samples, self.device)
            assert cond.prev_frame is not None
            cond = cond.replace(prev_frame=cond.prev_frame + self.prev_noise_std * z)
            x_t = q_sample(self.schedule, x0, t, eps)
            output = model_output(self.ema, self.config, self.schedule, x_t, t, cond)
            total += float(self.loss(output, x_t, t, x0, eps, cond)) * len(chunk)
        return total / n

    @torch.no_grad()
    def sample_grid(self, path: Path, n_frames: int = 4, steps: int = 10) -> None:
        """PNG grid, one row per frame: identity | low (upscaled) | generated | ground truth."""
        import cv2

        from facenhance_cli.video import write_image

        data = self.val_data or self.train_data
        ci = 0
        clip = data.clip(ci)
        n = min(n_frames, len(clip.high))
        conds = [
            conditioning_from_samples([data.sample(data.index.index((ci, i)), flip=False)], self.device)
            for i in range(n)
        ]
        denoiser = make_denoiser(self.ema, self.config, self.schedule)
        frames = generate_video(
            denoiser,
            ddim,
            self.schedule,
            conds,
            seeds=[self.tc.seed],
            prev_noise=self.config.conditioning,
            sampler_options={"steps": min(steps, self.schedule.num_timesteps)},
        )
        size = self.config.unet.image_size
        rows = []
        for i, frame in enumerate(frames):
            low_up = cv2.resize(clip.low[i], (size, size), interpolation=cv2.INTER_CUBIC)
            rows.append(np.concatenate([clip.identity, low_up, to_uint8(frame)[0], clip.high[i]], axis=1))
        write_image(path, np.concatenate(rows, axis=0))

    # -- files -------------------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "trained_on": str(self.options.data_dir),
            "train_clips": len(self.train_data.entries),
            "train_frames": len(self.train_data),
            "device": torch.cuda.get_device_name(self.device)
            if self.device.startswith("cuda")
            else platform.processor() or "cpu",
            "world_size": self.dist.world_size,
            "facenhance_version": __version__,
            "torch_version": str(torch.__version__),
        }

    def save_last(self) -> None:
        """RUN/last.pt: EMA weights plus everything a resume needs (model, optimiser, scaler, step)."""
        if not self.dist.is_main:
            return
        training_state = {
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "step": self.step,
            "best_val": self.best_val,
            # Only dropout draws from the global generator; everything else is keyed by (seed, step).
            "torch_rng": torch.get_rng_state(),
        }
        save_checkpoint(self.last_path, self.config, self.ema.state_dict(), self._meta(), training_state)

    def _append_log(self, record: dict[str, Any]) -> None:
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _trim_log(self) -> None:
        """On resume, drop log records written after the checkpoint being resumed."""
        path = self.run_dir / "log.jsonl"
        if not path.is_file():
            return
        kept = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= self.step
        ]
        write_text(path, "".join(line + "\n" for line in kept))

    # -- loop --------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train from the current step to max_steps; checkpoints, validation and samples on the way."""
        self._prepare_run_dir()
        start_step, start_time = self.step, time.perf_counter()
        window = _Window()
        # Ctrl-C (or SIGTERM) only sets a flag, checked between steps: a checkpoint never holds a half-applied update.
        interrupted: list[int] = []
        previous_handlers: dict[int, Any] = {}
        stats: dict[str, Any] = {"loss": 0.0}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):  # SIGTERM: a scheduler's pre-emption notice
                previous_handlers[signum] = signal.signal(
                    signum, lambda signum, frame: interrupted.append(signum)
                )
        try:
            while self.step < self.tc.max_steps:
                if interrupted:
                    raise KeyboardInterrupt
                stats = self.train_step()
                self._report(stats, window)
                self._periodic_work(self.step)
        except KeyboardInterrupt:
            self._read_stats(stats)  # never save a model whose last step diverged
            self.save_last()
            self._plot()
            raise TrainingInterrupted(
                f"interrupted at step {self.step}; checkpoint saved to {self.last_path}: rerun the same command to resume"
            ) from None
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        if self.dist.is_main:
            save_checkpoint(self.run_dir / "final.pt", self.config, self.ema.state_dict(), self._meta())
        self._plot()
        return {
            "steps": self.step - start_step,
            "seconds": time.perf_counter() - start_time,
            "final_step": self.step,
            "best_val": self.best_val,
            "final": str(self.run_dir / "final.pt"),
        }

    def _prepare_run_dir(self) -> None:
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "samples").mkdir(exist_ok=True)
            write_text(self.run_dir / "config.toml", config_to_toml(self.config))
            self._trim_log()

    def _report(self, stats: dict[str, Any], window: _Window) -> None:
        """Log (every log_every steps) and tell the progress callback; device values read only then."""
        tc, step = self.tc, self.step
        window.steps += 1
        elapsed = time.perf_counter() - window.start
        record: dict[str, Any] = {"step": step}
        logging_now = step % tc.log_every == 0 or step == tc.max_steps
        if logging_now or step % tc.checkpoint_every == 0 or step % tc.validate_every == 0:
            record.update(self._read_stats(stats))
        if logging_now:
            record["steps_per_s"] = window.steps / elapsed
            record["samples_per_s"] = window.steps * tc.batch_size / elapsed
            record["time"] = time.time()
            window.start, window.steps = time.perf_counter(), 0
            if self.dist.is_main:
                self._append_log(record)
            record["logged"] = True
        if self.options.progress:
            self.options.progress(record)

    def _periodic_work(self, step: int) -> None:
        """Validation (and best.pt), the sample grid and last.pt when their cadence comes round."""
        tc, last = self.tc, step == self.tc.max_steps
        if self.dist.is_main and (step % tc.validate_every == 0 or last):
            self._validate(step)
        if self.dist.is_main and (step % tc.sample_every == 0 or last):
            self.sample_grid(self.run_dir / "samples" / f"step_{step:07d}.png")
        if step % tc.checkpoint_every == 0 or last:
            self.save_last()
            self._plot()

    def _validate(self, step: int) -> None:
        val = self.validation_loss()
        if val is None:
            return
        self._append_log({"step": step, "val_loss": val, "time": time.time()})
        if self.options.progress:
            self.options.progress({"step": step, "val_loss": val})
        if self.best_val is None or val < self.best_val:
            self.best_val = val
            meta = {**self._meta(), "val_loss": val}
            save_checkpoint(self.run_dir / "best.pt", self.config, self.ema.state_dict(), meta)

    def _plot(self) -> None:
        if self.dist.is_main:
            plot_loss_curve(self.run_dir / "log.jsonl", self.run_dir / "loss.png")


@dataclass
class _Window:
    """The steps and start time of the current logging window (for steps/s)."""

    start: float = field(default_factory=time.perf_counter)
    steps: int = 0


def plot_loss_curve(log_path: Path, png_path: Path, width: int = 640, height: int = 360) -> None:
    """A log-scale training (blue) and validation (orange) loss curve, drawn with OpenCV."""
    import cv2

    from facenhance_cli.video import write_image

    if not log_path.is_file():
        return
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r and r["loss"] > 0]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r and r["val_loss"] > 0]
    if not train:
        return
    image = np.full((height, width, 3), 255, np.uint8)
    steps = [s for s, _ in train + val]
    values = [math.log10(v) for _, v in train + val]
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1
    s_lo, s_hi = min(steps), max(max(steps), min(steps) + 1)
    margin = 50

    def xy(step: float, value: float) -> tuple[int, int]:
        x = margin + (step - s_lo) / (s_hi - s_lo) * (width - 2 * margin)
        y = height - margin - (math.log10(value) - lo) / (hi - lo) * (height - 2 * margin)
        return int(x), int(y)

    cv2.rectangle(image, (margin, margin), (width - margin, height - margin), (0, 0, 0), 1)
    for series, color in ((train, (31, 119, 180)), (val, (255, 127, 14))):
        if len(series) > 1:
            points = np.array([xy(s, v) for s, v in series], np.int32)
            cv2.polylines(image, [points], False, color, 2)
    cv2.putText(
        image,
        f"loss (log10 {lo:.2f}..{hi:.2f}) vs step {s_lo}..{s_hi}",
        (margin, 30),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        (0, 0, 0),
        1,
    )
    write_image(png_path, image)


def train(options: TrainOptions) -> dict[str, Any]:
    """Train (or resume) a run; returns a summary."""
    trainer = Trainer(options)
    try:
        return trainer.run()
    finally:
        if trainer.dist.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
