"""`facenhance presets` and `facenhance models`: what can be trained and what is installed."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the commands to the app."""
    app.command("presets")(presets)
