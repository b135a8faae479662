"""`facenhance export`: an inference-only copy of a checkpoint, with recommended sampler settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facenhance_cli.cli.choices import GateScope, Sampler, Spacing
from facenhance_cli.cli.common import handle_errors


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("export")(export)


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
    edit_gate_scope: Annotated[
        GateScope | None,
        typer.Option(
            "--edit-gate-scope",
            help="Stored with the model (conditioning.edit_gate_scope): the expression gate holds back the "
            "whole edit pixel by pixel, or the pasted face's, the ring around it by the gate's mean over the face.",
        ),
    ] = None,
    paste_face: Annotated[
        bool | None,
        typer.Option(
            "--paste-face/--network-face",
            help="Stored with the model (conditioning.paste_face): inside the pasted face, output the low face "
            "pasted and sharpened and let the network draw only the ring around it; or the network's output "
            "everywhere. EDM models only.",
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
    from facenhance_cli.checkpoint import check_export_output, check_export_target, export_for_inference
    from facenhance_cli.fileio import check_writable
    from facenhance_cli.weights import find_model

    check_export_output(output)
    flags = {
        "sampling.steps": ("--steps", steps),
        "sampling.sampler": ("--sampler", sampler.value if sampler else None),
        "sampling.strength": ("--strength", strength),
        "sampling.spacing": ("--spacing", spacing.value if spacing else None),
        "sampling.shared_noise": ("--shared-noise", shared_noise),
        "conditioning.edit_gate_levels": ("--edit-gate-levels", edit_gate_levels),
        "conditioning.edit_gate_scope": (
            "--edit-gate-scope",
            edit_gate_scope.value if edit_gate_scope else None,
        ),
        "conditioning.paste_face": ("--paste-face", paste_face),
    }
    overrides = {key: value for key, (_, value) in flags.items() if value is not None}
    meta = {"trained_on": trained_on} if trained_on else None
    source = find_model(str(checkpoint), warn=lambda line: typer.echo(f"warning: {line}", err=True))
    check_export_target(source, output, overwrite)
    check_writable(output.parent)
    names = {key: flag for key, (flag, _) in flags.items()}
    path = export_for_inference(source, output, half, overrides, meta, names)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", err=True)
