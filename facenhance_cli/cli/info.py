"""`facenhance presets` and `facenhance models`: what can be trained, and what is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from facenhance_cli.cli.choices import Sampler, Spacing
from facenhance_cli.cli.common import handle_errors, is_terminal


def register(app: typer.Typer) -> None:
    """Add the commands to the app."""
    app.command("presets")(presets)
    app.command("models")(models)
    app.command("export")(export)


@handle_errors
def presets(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")
    ] = False,
) -> None:
    """List the model presets (paper, small, tiny) with parameters, GFLOP/call (one network call) and
    GFLOP/frame (calls of the default sampler), to pick by cost."""
    from facenhance_cli.config import load_preset, preset_names
    from facenhance_cli.costs import measure_cost

    rows: list[dict[str, Any]] = []
    for name in preset_names():
        config = load_preset(name)
        cost = measure_cost(config)
        calls = config.diffusion.num_timesteps if config.sampling.sampler == "ddpm" else config.sampling.steps
        rows.append(
            {
                "name": name,
                "parameters": cost.parameters,
                "gflop_per_call": round(cost.gflop_per_call, 2),
                "image_size": config.unet.image_size,
                "base_channels": config.unet.base_channels,
                "channel_mult": list(config.unet.channel_mult),
                "prediction": config.diffusion.prediction,
                "loss": config.diffusion.loss,
                "sampler": config.sampling.sampler,
                "steps": config.sampling.steps,
                "strength": config.sampling.strength,
                "spacing": config.sampling.spacing,
                "shared_noise": config.sampling.shared_noise,
                "gflop_per_frame": round(cost.gflop_per_call * calls, 1),
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="facenhance presets (GFLOP per frame = per call x default sampler steps)")
    for column in ("preset", "params", "GFLOP/call", "size", "channels", "loss", "sampler", "GFLOP/frame"):
        table.add_column(
            column, justify="left" if column in {"preset", "channels", "loss", "sampler"} else "right"
        )
    for r in rows:
        table.add_row(
            r["name"],
            f"{r['parameters'] / 1e6:.1f} M",
            f"{r['gflop_per_call']:.1f}",
            str(r["image_size"]),
            f"{r['base_channels']}x" + ",".join(map(str, r["channel_mult"])),
            f"{r['prediction']} / {r['loss']}",
            sampler_text(r),
            f"{r['gflop_per_frame']:.0f}",
        )
    Console(width=None if is_terminal() else 160).print(table)  # a pipe gets whole headers


@handle_errors
def models(
    models_dir: Annotated[
        Path | None,
        typer.Option("--models-dir", help="Extra folder to search first (also: FACENHANCE_MODELS)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")
    ] = False,
) -> None:
    """List installed facenhance models: name, preset, size, training data, recommended sampler and steps."""
    from facenhance_cli.checkpoint import checkpoint_config, read_checkpoint
    from facenhance_cli.errors import CheckpointError
    from facenhance_cli.weights import list_model_files, model_search_dirs

    rows: list[dict[str, Any]] = []
    for path in list_model_files(models_dir):
        try:
            payload = read_checkpoint(path)
            config = checkpoint_config(payload, path)
        except CheckpointError as exc:
            rows.append({"name": path.stem, "path": str(path), "error": str(exc)})
            continue
        meta = payload.get("meta", {})
        parameters = sum(v.numel() for v in payload["ema"].values() if v.is_floating_point())
        rows.append(
            {
                "name": path.stem,
                "path": str(path),
                "preset": config.name,
                "parameters": parameters,
                "size_mb": round(path.stat().st_size / 1e6, 1),
                "trained_on": meta.get("trained_on", "unknown"),
                "steps_trained": meta.get("step"),
                "sampler": config.sampling.sampler,
                "steps": config.sampling.steps,
                "strength": config.sampling.strength,
                "spacing": config.sampling.spacing,
                "shared_noise": config.sampling.shared_noise,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if is_terminal() else 200)
    if not rows:
        searched = ", ".join(str(d) for d in model_search_dirs(models_dir))
        console.print(f"no models installed (searched: {searched})")
        return
    table = Table(title="installed facenhance models")
    for column in ("name", "preset", "params", "MB", "trained on", "sampler", "path"):
        table.add_column(column)
    for r in rows:
        if "error" in r:
            table.add_row(r["name"], "-", "-", "-", r["error"], "-", r["path"])
            continue
        table.add_row(
            r["name"],
            r["preset"],
            f"{r['parameters'] / 1e6:.1f} M",
            f"{r['size_mb']}",
            str(r["trained_on"]),
            sampler_text(r),
            r["path"],
        )
    console.print(table)


def sampler_text(row: dict[str, Any]) -> str:
    """'ddim 4 karras, shared noise' from a presets/models row: the recommended sampler in one cell."""
    text = f"{row['sampler']} {row['steps']}"
    text += " karras" if row.get("spacing") == "karras" else ""
    text += f" @ {row['strength']:g}" if row["strength"] < 1 else ""
    return text + (", shared noise" if row.get("shared_noise") else "")


@handle_errors
def export(
    checkpoint: Annotated[
        Path, typer.Argument(help="A checkpoint or run folder (final.pt, last.pt or best.pt).")
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="The inference-only checkpoint to write (.pt).")
    ],
    half: Annotated[
        bool, typer.Option("--half/--fp32", help="Store the weights as fp16 (half the size).")
    ] = True,
    steps: Annotated[
        int | None, typer.Option("--steps", help="Recommended DDIM steps stored with the model.")
    ] = None,
    sampler: Annotated[
        Sampler | None, typer.Option("--sampler", help="Recommended sampler stored with the model.")
    ] = None,
    strength: Annotated[
        float | None,
        typer.Option("--strength", help="Recommended DDIM strength (SDEdit start) stored with the model."),
    ] = None,
    spacing: Annotated[
        Spacing | None,
        typer.Option("--spacing", help="Recommended DDIM timestep spacing stored with the model."),
    ] = None,
    shared_noise: Annotated[
        bool | None,
        typer.Option(
            "--shared-noise/--per-frame-noise",
            help="Recommended noise: one x_T for every frame of a video, or one per frame.",
        ),
    ] = None,
    edit_gate_levels: Annotated[
        float | None,
        typer.Option(
            "--edit-gate-levels",
            help="Expression gate stored with the model (conditioning.edit_gate_levels; 0 off): its edit "
            "stays where the low face changed the identity by about this many 8-bit levels. EDM models only.",
        ),
    ] = None,
    trained_on: Annotated[
        str | None, typer.Option("--trained-on", help="What the model was trained on, for `models`.")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace an existing OUTPUT (never the input, nor a resumable training checkpoint).",
        ),
    ] = False,
) -> None:
    """Write an inference-only copy of a checkpoint (EMA weights, no optimiser), e.g. to share or ship it."""
    from facenhance_cli.checkpoint import check_export_target, export_for_inference
    from facenhance_cli.fileio import check_writable
    from facenhance_cli.weights import find_model

    flags = {
        "sampling.steps": ("--steps", steps),
        "sampling.sampler": ("--sampler", sampler.value if sampler else None),
        "sampling.strength": ("--strength", strength),
        "sampling.spacing": ("--spacing", spacing.value if spacing else None),
        "sampling.shared_noise": ("--shared-noise", shared_noise),
        "conditioning.edit_gate_levels": ("--edit-gate-levels", edit_gate_levels),
    }
    overrides = {key: value for key, (_, value) in flags.items() if value is not None}
    meta = {"trained_on": trained_on} if trained_on else None
    source = find_model(str(checkpoint))
    check_export_target(source, output, overwrite)
    check_writable(output.parent)
    names = {key: flag for key, (flag, _) in flags.items()}
    path = export_for_inference(source, output, half, overrides, meta, names)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", err=True)
