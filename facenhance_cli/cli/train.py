"""`facenhance train`: train the enhancer on `prepare`'s output."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from facenhance_cli.cli.choices import Precision
from facenhance_cli.cli.common import Threads, handle_errors, is_terminal


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("train")(train)


@handle_errors
def train(
    data: Annotated[
        Path, typer.Argument(help="Folder written by `facenhance prepare` (manifest.jsonl + clips).")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Run folder: checkpoints, logs, samples.")],
    preset: Annotated[
        str | None, typer.Option("--preset", help="paper | small | tiny (default: small).")
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="A TOML config file instead of a preset.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override one config key: --set training.lr=1e-4 (repeatable)."),
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Train until this many optimiser steps.")
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            "--max-minutes",
            min=0.0,
            help="Stop after this many minutes of training (a checkpoint is saved; the same command resumes).",
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Global batch size (split over DDP processes).")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate.")] = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Start a new run from this model's weights (a file, run folder or model name) and, without "
            "--preset/--config, its config: fine-tuning. A RUN that holds last.pt resumes instead.",
        ),
    ] = None,
    teacher: Annotated[
        str | None,
        typer.Option(
            "--teacher",
            help="Distil this model (a file, run folder or model name): train a student to reproduce its "
            "samples in fewer steps (sampling.steps, 1 unless --set). Without --init/--preset/--config the "
            "student starts as the teacher. Give it again to resume.",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Require RUN/last.pt and resume it (rerunning into the same RUN also resumes)."
        ),
    ] = False,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
    precision: Annotated[
        Precision,
        typer.Option(
            "--precision", help="fp32 | bf16 | fp16 (bf16 autocast also on the CPU; fp16 needs CUDA)."
        ),
    ] = Precision.fp32,
    compile_: Annotated[
        bool, typer.Option("--compile", help="torch.compile the network (CUDA; slow first steps).")
    ] = False,
    workers: Annotated[
        int, typer.Option("--workers", help="Threads decoding the prepared clips when the data is loaded.")
    ] = 2,
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, help="Seed for weights, data order and noise.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    threads: Threads = None,
) -> None:
    """Train the enhancer (Algorithm 1) on prepared clips; resumable, with logs, checkpoints and sample grids.

    Writes RUN/last.pt (resumable), RUN/best.pt (best validation loss), RUN/final.pt (EMA weights, what
    `enhance --model RUN` loads), RUN/log.jsonl, RUN/config.toml, RUN/loss.png and RUN/samples/*.png.
    Multi-GPU: `torchrun --nproc_per_node N -m facenhance_cli train ...`.
    """
    from facenhance_cli.threads import use_threads

    use_threads(threads)  # first: OpenMP reads its settings when torch loads
    from facenhance_cli.cli.common import resolve_device
    from facenhance_cli.config import load_config_file, load_preset, parse_set_option
    from facenhance_cli.errors import UsageError
    from facenhance_cli.training import TrainOptions
    from facenhance_cli.training import train as run_training
    from facenhance_cli.training.distill import teacher_from

    if preset and config_file:
        raise UsageError("give --preset or --config, not both")
    if max_minutes is not None and not math.isfinite(max_minutes):
        raise UsageError(f"--max-minutes must be a finite number, got {max_minutes}")
    explicit = bool(preset or config_file or set_)
    resuming = (output / "last.pt").is_file()
    teacher_model = _load_init(teacher) if teacher else None  # read on every resume: each step samples it
    init_model = _init_model(init, teacher, teacher_model, bool(preset or config_file), resuming)
    if (init or teacher) and not (preset or config_file):
        config = init_model.config if init_model is not None else _run_config(output / "last.pt")
    else:
        config = load_config_file(config_file) if config_file else load_preset(preset or "small")
    overrides = {**_objective(bool(teacher), init_model, resuming), **dict(map(parse_set_option, set_ or []))}
    training_overrides = {}
    for key, value in (("max_steps", max_steps), ("batch_size", batch_size), ("lr", lr), ("seed", seed)):
        if value is not None:
            training_overrides[f"training.{key}"] = value
    if any(k in training_overrides for k in ("training.batch_size", "training.lr", "training.seed")):
        explicit = True
    config = config.with_overrides({**overrides, **training_overrides})  # flags win over --set
    _check_data(data, output)
    options = TrainOptions(
        data_dir=data,
        run_dir=output,
        config=config,
        config_explicit=explicit,
        resume=resume,
        device=resolve_device(device),
        precision=precision.value,
        compile=compile_,
        workers=workers,
        overrides={k: v for k, v in training_overrides.items() if k == "training.max_steps"},
        init_state=init_model.network.state_dict() if init_model is not None else None,
        init_source=str(init_model.path) if init_model is not None else "",
        init_unet=init_model.config.unet if init_model is not None else None,
        teacher=teacher_from(teacher_model) if teacher_model is not None else None,
        max_seconds=None if max_minutes is None else 60 * max_minutes,
    )
    if quiet:
        summary = run_training(options)
    else:
        summary = _train_with_progress(options, config.training.max_steps)
    if not quiet:
        best = f", best validation loss {summary['best_val']:.5f}" if summary["best_val"] is not None else ""
        typer.echo(
            f"trained {summary['steps']} steps to step {summary['final_step']} in {summary['seconds']:.0f} s{best}; "
            f"model: {summary['final']}",
            err=True,
        )


def _objective(distilling: bool, init_model, resuming: bool) -> dict[str, object]:
    """A new run's objective (before --set): distil with --teacher (one step unless --set says more); a
    distilled student given to --init alone is fine-tuned as a denoiser (distil the result again)."""
    if distilling and not resuming:
        return {"training.objective": "distill", "sampling.steps": 1}
    if init_model is not None and init_model.config.training.objective == "distill":
        return {"training.objective": "denoise"}
    return {}


def _init_model(init: str | None, teacher: str | None, teacher_model, configured: bool, resuming: bool):
    """The model a new run starts from: --init, else (no --preset/--config) the teacher; None to resume.

    --init starts a new run only: a folder that holds last.pt resumes from it without reading the init model
    (which may be gone by then); the run's own config stands in for the init model's."""
    if resuming:
        return None
    if init:
        return _load_init(init)
    return teacher_model if teacher and not configured else None


def _run_config(last: Path):
    """The config stored in a run's last.pt."""
    from facenhance_cli.checkpoint import checkpoint_config, read_checkpoint

    return checkpoint_config(read_checkpoint(last), last)


def _load_init(init: str):
    """The model `--init` names (EMA weights and config), through the same lookup as `enhance --model`."""
    from facenhance_cli.checkpoint import load_for_inference
    from facenhance_cli.weights import find_model

    return load_for_inference(find_model(init, warn=lambda line: typer.echo(f"warning: {line}", err=True)))


def _check_data(data: Path, run_dir: Path) -> None:
    """Before the model is built: the run folder is not the data, and the train split has clips (else say
    why and what to do, rather than torch's or the loader's words)."""
    from facenhance_cli.data import read_manifest
    from facenhance_cli.errors import InputError, UsageError
    from facenhance_cli.fileio import refuse_file_as_folder
    from facenhance_cli.prepare import empty_train_message

    if data.exists() and run_dir.exists() and data.resolve() == run_dir.resolve():
        raise UsageError(f"-o {run_dir} is the data folder: give the run its own folder")
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"-o {run_dir} exists and is not a folder: give the run a folder")
    refuse_file_as_folder(run_dir)
    entries = read_manifest(data)
    if not any(e.split == "train" for e in entries):
        raise InputError(empty_train_message(data, entries))


def _train_with_progress(options, max_steps: int):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from facenhance_cli.training import train as run_training

    if not is_terminal():

        def log_line(record):
            if "loss" in record and record.get("logged"):
                typer.echo(
                    f"step {record['step']}/{max_steps} loss {record['loss']:.5f} "
                    f"lr {record['lr']:.2e} {record['steps_per_s']:.2f} it/s",
                    err=True,
                )
            elif "val_loss" in record:
                typer.echo(f"step {record['step']} validation loss {record['val_loss']:.5f}", err=True)

        options.progress = log_line
        return run_training(options)

    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  val {task.fields[val]}  {task.fields[speed]} it/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("train", total=max_steps, loss="-", val="-", speed="-")

        def update(record):
            if "val_loss" in record:
                progress.update(task, val=f"{record['val_loss']:.4f}")
                return
            fields = {"completed": record["step"]}
            if record.get("logged"):  # the loss is read from the device only on logged steps
                fields.update(loss=f"{record['loss']:.4f}", speed=f"{record['steps_per_s']:.2f}")
            progress.update(task, **fields)

        options.progress = update
        return run_training(options)
