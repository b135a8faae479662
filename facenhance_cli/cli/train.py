"""`facenhance train` (placeholder until its issue lands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("train")
    def command() -> None:
        """Not implemented yet."""
        raise typer.Exit(1)
