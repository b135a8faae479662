"""`facenhance presets` and `facenhance models`: what can be trained, and what is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from facenhance_cli.cli.common import handle_errors, is_terminal


def register(app: typer.Typer) -> None:
    """Add the commands to the app."""
    app.command("presets")(presets)
    app.command("models")(models)


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
    from facenhance_cli.weights import list_model_files, model_dir_warnings, model_search_dirs

    for warning in model_dir_warnings(models_dir):
        typer.echo(f"warning: {warning}", err=True)
    rows = [_model_row(path) for path in list_model_files(models_dir)]
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


def _model_row(path: Path) -> dict[str, Any]:
    """One installed model's row of `facenhance models` (an unreadable file: its error)."""
    from facenhance_cli.checkpoint import checkpoint_config, read_checkpoint
    from facenhance_cli.errors import CheckpointError

    try:
        payload = read_checkpoint(path)
        config = checkpoint_config(payload, path)
    except CheckpointError as exc:
        return {"name": path.stem, "path": str(path), "error": str(exc)}
    meta = payload.get("meta", {})
    return {
        "name": path.stem,
        "path": str(path),
        "preset": config.name,
        "parameters": sum(v.numel() for v in payload["ema"].values() if v.is_floating_point()),
        "size_mb": round(path.stat().st_size / 1e6, 1),
        "trained_on": meta.get("trained_on", "unknown"),
        "steps_trained": meta.get("step"),
        "sampler": config.sampling.sampler,
        "steps": config.sampling.steps,
        "strength": config.sampling.strength,
        "spacing": config.sampling.spacing,
        "shared_noise": config.sampling.shared_noise,
        "distilled_from": meta.get("distilled_from"),
    }


def sampler_text(row: dict[str, Any]) -> str:
    """'ddim 4 karras, shared noise' from a presets/models row: the recommended sampler in one cell."""
    text = f"{row['sampler']} {row['steps']}"
    text += " karras" if row.get("spacing") == "karras" else ""
    text += f" @ {row['strength']:g}" if row["strength"] < 1 else ""
    text += ", shared noise" if row.get("shared_noise") else ""
    return text + (f", distilled from {row['distilled_from']}" if row.get("distilled_from") else "")
