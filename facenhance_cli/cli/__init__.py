"""The `facenhance` command line. Commands are thin: parse options, call one pipeline function, print.

Heavy imports (torch, av, cv2, dlib) happen inside the commands so `facenhance --help` is instant.
"""

from __future__ import annotations

import typer

from facenhance_cli import __version__

app = typer.Typer(
    name="facenhance",
    help=(
        "Enhance 64x64 black-background facial-expression videos to 192x192 videos with background, "
        "hair and clothing, using a recurrent conditional diffusion model (FacEnhance, Bouzid & Ballihi)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"facenhance {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Enhance 64x64 facial-expression videos to 192x192 with a recurrent conditional DDPM."""


def _register() -> None:
    from facenhance_cli.cli import enhance, evaluate, info, prepare, train

    for module in (prepare, train, enhance, evaluate, info):
        module.register(app)


_register()


def main() -> None:
    """Console-script entry point."""
    app()
