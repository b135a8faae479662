"""The training loop: a Trainer holds the network, its EMA, the optimiser and the data; `run()` trains."""

from __future__ import annotations

import copy
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TypedDict

import torch

from facenhance_cli.accel import configure_cuda_math, optimizer_options
from facenhance_cli.checkpoint import save_checkpoint
from facenhance_cli.conditioning import add_prev_noise
from facenhance_cli.config import UNetConfig, config_to_toml
from facenhance_cli.data import FrameDataset, read_manifest
from facenhance_cli.diffusion.denoiser import NetworkForward
from facenhance_cli.diffusion.precond import model_output
from facenhance_cli.diffusion.schedule import make_schedule, q_sample
from facenhance_cli.errors import FacenhanceError, InputError, UsageError
from facenhance_cli.fileio import write_text
from facenhance_cli.nn.unet import build_network
from facenhance_cli.training import logs
from facenhance_cli.training.distill import Teacher, check_teacher, distill_loss, sample_x0
from facenhance_cli.training.setup import (
    ResumeCheckpoint,
    TrainingInterrupted,
    TrainOptions,
    autocast_dtype,
    init_distributed,
    resolve_config,
    resume_payload,
    run_meta,
)
from facenhance_cli.training.step import Batch, draw_batch, sample_generator, training_loss, update_ema
from facenhance_cli.training.validation import sample_grid, validation_loss

log = logging.getLogger(__name__)

# What signal.signal takes and returns (typeshed's private _HANDLER).
SignalHandler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


@dataclass(frozen=True)
class StepStats:
    """One training step's numbers. Tensors, not floats: reading them waits for the device, so run() reads
    them only when it logs or saves (checked finite then, before any checkpoint can hold a diverged model)."""

    loss: torch.Tensor  # () the step's loss, averaged over the DDP processes
    lr: float  # the learning rate the step used
    grad_norm: torch.Tensor  # () the gradient norm before clipping


class TrainSummary(TypedDict):
    """What `train` returns."""

    steps: int  # steps run by this call (fewer than final_step after a resume)
    seconds: float
    final_step: int
    best_val: float | None  # the best validation loss (None: no validation split)
    final: str  # the path of RUN/final.pt


class Trainer:
    """Holds the network, its EMA, the optimiser and the data; `run()` trains to max_steps."""

    def __init__(self, options: TrainOptions) -> None:
        self.options = options
        self.dist, self.device = init_distributed(options.device)
        self.run_dir = Path(options.run_dir)
        self.last_path = self.run_dir / "last.pt"
        payload = resume_payload(self.last_path, options.resume)
        self.config = resolve_config(options, payload, self.last_path)
        self.tc = self.config.training
        if self.tc.batch_size % self.dist.world_size:
            raise UsageError(
                f"batch size {self.tc.batch_size} must be divisible by the {self.dist.world_size} processes"
            )
        configure_cuda_math(self.device)
        self.schedule = make_schedule(self.config.diffusion).to(self.device)
        self.train_data, self.val_data = self._load_data()
        # --workers > 1 also builds each batch's samples on that many threads (a GPU outruns one CPU thread).
        self.pool = ThreadPoolExecutor(options.workers) if options.workers > 1 else None
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
        self.autocast_dtype = autocast_dtype(options.precision, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if options.precision == "fp16" else None
        self.step = 0
        self.best_val: float | None = None
        if payload is not None:
            self._restore(payload)
        elif options.init_state is not None:
            self._initialise(options.init_state, options.init_source, options.init_unet)
        self.forward = self._forward(options.compile)
        self.teacher = self._teacher(options.teacher)

    def _forward(self, compile_network: bool) -> NetworkForward:
        """The network as the step calls it: wrapped for DDP under torchrun, compiled with --compile."""
        model: torch.nn.Module = self.network
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.dist.local_rank] if self.device.startswith("cuda") else None
            model = DistributedDataParallel(self.network, device_ids=device_ids)
        return torch.compile(model) if compile_network else model

    def _teacher(self, teacher: Teacher | None) -> Teacher | None:
        """A distillation run's teacher, checked against the run and moved to its device."""
        distilling = self.tc.objective == "distill"
        if distilling and teacher is None:
            raise UsageError(f"{self.run_dir} distils a teacher model: give --teacher MODEL")
        if teacher is None:
            return None
        if not distilling:
            raise UsageError(
                f"{self.run_dir} holds a run that was not started as a distillation: drop --teacher"
            )
        check_teacher(teacher, self.config)
        teacher.network.to(self.device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return teacher

    def _load_data(self) -> tuple[FrameDataset, FrameDataset | None]:
        """The train split (and the test split, for validation) as FrameDatasets for this model."""
        entries = read_manifest(self.options.data_dir)
        train_entries = [e for e in entries if e.split == "train"]
        val_entries = [e for e in entries if e.split == "test"]
        if not train_entries:
            raise InputError(f"no clips in the train split of {self.options.data_dir}")
        workers = max(1, self.options.workers)
        train_data = FrameDataset(train_entries, self.config, workers=workers)
        val_data = None
        if val_entries:
            try:
                val_data = FrameDataset(val_entries, self.config, workers=workers)
            except InputError as exc:
                log.warning("no validation: the test split is unreadable (%s)", exc)
        if self.tc.batch_size > len(train_data):
            raise UsageError(
                f"batch size {self.tc.batch_size} is larger than the {len(train_data)} training frames"
            )
        return train_data, val_data

    def _restore(self, payload: ResumeCheckpoint) -> None:
        """Resume: weights, EMA, optimiser, scaler, step and RNG from RUN/last.pt."""
        state = payload["training"]
        self.network.load_state_dict(state["model"])
        self.ema.load_state_dict(payload["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        scaler_state = state.get("scaler")
        if self.scaler is not None and scaler_state:
            self.scaler.load_state_dict(scaler_state)
        self.step = int(state["step"])
        self.best_val = state.get("best_val")
        rng = state.get("torch_rng")
        if rng is not None:
            torch.set_rng_state(rng)

    def _initialise(self, state: dict[str, torch.Tensor], source: str, unet: UNetConfig | None) -> None:
        """--init: the network and its EMA start from `state` (a fine-tune), from its levels that a larger
        patch keeps, or with new input images' weights at 0 (nn/transplant.py); optimiser and step fresh."""
        from facenhance_cli.checkpoint import state_mismatch
        from facenhance_cli.nn.transplant import transplant_state, widen_inputs

        mismatch = state_mismatch(self.network, state)
        if mismatch and unet is not None:
            own = self.network.state_dict()
            transplanted = transplant_state(state, unet, self.config.unet, own)
            transplanted = transplanted or widen_inputs(state, unet, self.config.unet, own)
            if transplanted is not None:
                state, mismatch = transplanted, None
        if mismatch:
            raise UsageError(f"--init {source} does not fit this run's config: {mismatch}")
        self.network.load_state_dict(state)
        self.ema.load_state_dict(state)

    def _lr(self, step: int) -> float:
        if self.tc.warmup_steps and step < self.tc.warmup_steps:
            return self.tc.lr * (step + 1) / self.tc.warmup_steps
        return self.tc.lr

    def train_step(self) -> StepStats:
        """Algorithm 1: x_t from (x0, eps, t), the model sees (x_t, I_id, f_low, f_prev + z); loss to the target."""
        self.network.train()
        ranks = range(self.dist.rank, self.tc.batch_size, self.dist.world_size)
        batch = draw_batch(
            self.train_data, self.tc, self.schedule.num_timesteps, self.step, ranks, self.device, self.pool
        )
        lr = self._lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self._loss(batch, ranks)
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
        update_ema(self.ema, self.network, self.tc, self.step)
        self.step += 1
        return StepStats(self._mean_over_ranks(loss.detach()), lr, grad_norm.detach())

    def _loss(self, batch: Batch, ranks: range) -> torch.Tensor:
        """The step's loss: Algorithm 1 on the truth, or (distillation) the teacher's sample from x_T = eps."""
        cond = add_prev_noise(batch.cond, self.config.conditioning.prev_noise_std, batch.z)
        if self.teacher is not None:
            generators = [sample_generator(self.tc.seed, self.step, k) for k in ranks]
            with torch.no_grad():
                target = sample_x0(
                    self.teacher.network,
                    self.teacher.config,
                    self.schedule,
                    cond,
                    batch.eps,
                    generators,
                    self.autocast_dtype,
                )
            output = sample_x0(
                self.forward, self.config, self.schedule, cond, batch.eps, generators, self.autocast_dtype
            )
            return distill_loss(output, target, cond.edit_mask)
        x_t = q_sample(self.schedule, batch.x0, batch.t, batch.eps)
        device_type = self.device.split(":")[0]
        with torch.autocast(device_type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            output = model_output(self.forward, self.config, self.schedule, x_t, batch.t, cond)
        return training_loss(self.config, self.schedule, output.float(), x_t, batch)

    def _mean_over_ranks(self, value: torch.Tensor) -> torch.Tensor:
        """A scalar averaged over the DDP processes (itself in a single process)."""
        if self.dist.world_size == 1:
            return value
        import torch.distributed as dist

        cuda = self.device.startswith("cuda")
        dist.all_reduce(value, op=dist.ReduceOp.AVG if cuda else dist.ReduceOp.SUM)
        return value if cuda else value / self.dist.world_size

    def _read_stats(self, stats: StepStats) -> dict[str, float]:
        """Floats of a train_step's tensors; a non-finite loss stops the run before anything is saved."""
        loss = float(stats.loss)
        if not math.isfinite(loss):
            raise FacenhanceError(f"loss became {loss} by step {self.step}: lower --lr or use fp32")
        return {"loss": loss, "lr": stats.lr, "grad_norm": float(stats.grad_norm)}

    def _meta(self) -> dict[str, int | str]:
        train = self.train_data
        return run_meta(
            self.step, self.options, self.device, len(train.entries), len(train), self.dist.world_size
        )

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

    def run(self) -> TrainSummary:
        """Train from the current step to max_steps; checkpoints, validation and samples on the way."""
        self._prepare_run_dir()
        start_step, start_time = self.step, time.perf_counter()
        window = logs.Window()
        # Ctrl-C (or SIGTERM) only sets a flag, checked between steps: a checkpoint never holds a half-applied update.
        interrupted: list[int] = []
        previous_handlers: dict[signal.Signals, SignalHandler] = {}
        stats: StepStats | None = None
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):  # SIGTERM: a scheduler's pre-emption notice
                previous_handlers[signum] = signal.signal(signum, lambda s, frame: interrupted.append(s))
        try:
            while self.step < self.tc.max_steps:
                if interrupted:
                    raise KeyboardInterrupt
                if self._out_of_time(start_time):
                    self.save_last()  # a later run with the same command resumes here
                    break
                stats = self.train_step()
                self._report(stats, window)
                self._periodic_work(self.step)
        except KeyboardInterrupt:
            if stats is not None:
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
        seconds = time.perf_counter() - start_time
        final = str(self.run_dir / "final.pt")
        return {
            "steps": self.step - start_step,
            "seconds": seconds,
            "final_step": self.step,
            "best_val": self.best_val,
            "final": final,
        }

    def _out_of_time(self, start_time: float) -> bool:
        """--max-minutes has passed since this call's first step (checked between steps)."""
        limit = self.options.max_seconds
        return limit is not None and time.perf_counter() - start_time >= limit

    def _prepare_run_dir(self) -> None:
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "samples").mkdir(exist_ok=True)
            write_text(self.run_dir / "config.toml", config_to_toml(self.config))
            logs.trim_log(self.run_dir, self.step)

    def _report(self, stats: StepStats, window: logs.Window) -> None:
        """Log (every log_every steps) and tell the progress callback; device values read only then."""
        tc, step = self.tc, self.step
        window.steps += 1
        elapsed = time.perf_counter() - window.start
        record: logs.LogRecord = {"step": step}
        logging_now = step % tc.log_every == 0 or step == tc.max_steps
        if logging_now or step % tc.checkpoint_every == 0 or step % tc.validate_every == 0:
            record.update(self._read_stats(stats))
        if logging_now:
            record["steps_per_s"] = window.steps / elapsed
            record["samples_per_s"] = window.steps * tc.batch_size / elapsed
            record["time"] = time.time()
            window.start, window.steps = time.perf_counter(), 0
            if self.dist.is_main:
                logs.append_log(self.run_dir, record)
            record["logged"] = True
        if self.options.progress:
            self.options.progress(record)

    def _periodic_work(self, step: int) -> None:
        """Validation (and best.pt), the sample grid and last.pt when their cadence comes round."""
        tc, last = self.tc, step == self.tc.max_steps
        if self.dist.is_main and (step % tc.validate_every == 0 or last):
            self._validate(step)
        if self.dist.is_main and (step % tc.sample_every == 0 or last):
            path = self.run_dir / "samples" / f"step_{step:07d}.png"
            sample_grid(
                path, self.ema, self.config, self.schedule, self.val_data or self.train_data, self.device
            )
        if step % tc.checkpoint_every == 0 or last:
            self.save_last()
            self._plot()

    def _validate(self, step: int) -> None:
        if self.val_data is None:
            return
        val = validation_loss(self.ema, self.config, self.schedule, self.val_data, self.device, self.teacher)
        logs.append_log(self.run_dir, {"step": step, "val_loss": val, "time": time.time()})
        if self.options.progress:
            self.options.progress({"step": step, "val_loss": val})
        if self.best_val is None or val < self.best_val:
            self.best_val = val
            meta = {**self._meta(), "val_loss": val}
            save_checkpoint(self.run_dir / "best.pt", self.config, self.ema.state_dict(), meta)

    def _plot(self) -> None:
        if self.dist.is_main:
            logs.plot_loss_curve(self.run_dir / "log.jsonl", self.run_dir / "loss.png")


def train(options: TrainOptions) -> TrainSummary:
    """Train (or resume) a run; returns a summary."""
    trainer = Trainer(options)
    try:
        return trainer.run()
    finally:
        if trainer.pool is not None:
            trainer.pool.shutdown()
        if trainer.dist.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
