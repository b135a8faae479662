"""The `facenhance` command line. Commands are thin: parse options, call one pipeline function, print.

Heavy imports (torch, av, cv2, dlib) happen inside the commands so `facenhance --help` is instant.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from facenhance_cli import __version__
from facenhance_cli.errors import note_signal

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


def _no_type_for_flags() -> None:
    """Show no `<bool>` after on/off flags in --help: they take no value (typer 0.29 prints their type)."""
    from typer.core import TyperOption

    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_facenhance", False):
        return

    def display_type_rich(self, ctx):  # type: ignore[no-untyped-def]
        if getattr(self, "is_flag", False) and self.metavar is None:
            return None
        return original(self, ctx)

    display_type_rich._facenhance = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_no_type_for_flags()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"facenhance {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Enhance 64x64 facial-expression videos to 192x192 with a recurrent conditional DDPM."""


def _register() -> None:
    from facenhance_cli.cli import enhance, evaluate, export, info, prepare, train, weights

    for module in (prepare, train, enhance, evaluate, info, export, weights):
        module.register(app)


_register()


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (kill, a batch scheduler's notice) takes Ctrl-C's path: temporary files removed, training
    saved after the current step, exit 130. Recorded too: a batch stops before its next input even when a
    library swallowed the KeyboardInterrupt (PyAV, blocked on a FIFO, reports only its EINTR)."""
    note_signal(signum)
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point: usage errors are one line (`error: ...`, exit 2), never a rich panel."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    _leave(_run_app())


def _run_app() -> int:
    """Run the command and return its exit code; usage errors and Ctrl-C become one line here."""
    try:
        code = app(standalone_mode=False)
    except Exception as exc:
        # Click's (or Typer's vendored click's) usage errors carry format_message() and exit_code.
        if type(exc).__name__ == "NoArgsIsHelpError":
            typer.echo(exc.format_message())  # type: ignore[attr-defined]
            return 0
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            message = " ".join(exc.format_message().split())
            typer.echo(f"error: {message} (see --help)", err=True)
            return int(exc.exit_code)
        if type(exc).__name__ == "Abort":
            typer.echo("error: interrupted", err=True)
            return 130
        raise
    return code if isinstance(code, int) else 0


def _leave(code: int) -> NoReturn:
    """Exit with `code`; once torch is loaded, skip the interpreter's teardown (freeing torch's modules
    takes 0.4 s of a 3 s enhance, docs/speed.md). Every command has closed its outputs by now (they are
    written to a temporary name and renamed); with a child process or another thread still alive, or
    FACENHANCE_FULL_EXIT=1, the ordinary exit runs."""
    import os
    import sys
    import threading

    if "torch" not in sys.modules or os.environ.get("FACENHANCE_FULL_EXIT") == "1":
        sys.exit(code)
    if threading.active_count() > 1 or _has_children():
        sys.exit(code)
    import logging

    logging.shutdown()
    if not _flush_all() and code == 0:
        code = 120  # what Python's own exit returns when it cannot flush stdout (a full disk)
    os._exit(code)


def _flush_all() -> bool:
    """Flush Python's standard streams and the C library's (what native code printed); False when output
    was lost (a closed pipe is not a loss: its reader went away)."""
    import ctypes
    import sys

    flushed = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            pass
        except (OSError, ValueError):
            flushed = False
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to ask (not on Linux or macOS)
        pass
    return flushed


def _has_children() -> bool:
    """Whether this process started child processes that are still running (multiprocessing's)."""
    import sys

    if "multiprocessing" not in sys.modules:
        return False
    import multiprocessing

    return bool(multiprocessing.active_children())
