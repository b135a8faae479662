"""What every command shares: one-line errors with the right exit code, consoles, device choice."""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

DEBUG_ENV = "FACENHANCE_DEBUG"

Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        max=1024,  # more is a typo: each is an OS thread
        help="CPU threads (default: OMP_NUM_THREADS, else the cores this process may use: affinity and "
        "cgroup quota). On a busy machine idle threads sleep (OMP_WAIT_POLICY=PASSIVE) unless it is set.",
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: message` on stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn user-caused exceptions into one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from facenhance_cli.errors import FacenhanceError, first_line, is_interruption

        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except FacenhanceError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except OSError as exc:
            if is_interruption(exc):  # a blocked read cut short by SIGTERM or Ctrl-C: as KeyboardInterrupt
                raise fail("interrupted", 130) from None
            raise _os_error(exc) from None
        except MemoryError:
            raise fail("out of memory: use a smaller --batch-size / --batch-videos") from None
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            first = first_line(exc)
            raise fail(
                f"internal error ({type(exc).__name__}: {first}); set {DEBUG_ENV}=1 for the traceback"
            ) from None

    return wrapper  # type: ignore[return-value]


def _os_error(exc: OSError) -> typer.Exit:
    """An OSError as one line: a full or read-only disk names the path and the disk (FACENHANCE_DEBUG=1
    re-raises it for the traceback)."""
    if os.environ.get(DEBUG_ENV):
        raise exc
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        from facenhance_cli.fileio import write_error_message

        if exc.filename:  # a failed write(): no path known, so none is guessed
            return fail(write_error_message(exc.filename, exc))
        return fail(f"a write failed: {exc.strerror or exc} (check the output folder's disk)")
    return fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))


def is_terminal() -> bool:
    """True when stderr is a terminal (show progress bars); batch scripts get quiet output."""
    return sys.stderr.isatty()


def resolve_device(name: str) -> str:
    """`auto` -> cuda (this process's LOCAL_RANK GPU under torchrun) else cpu; unavailable devices are usage errors.

    Apple's MPS is refused: the samplers and the schedule compute in float64, which MPS does not support.
    """
    import torch

    from facenhance_cli.errors import UsageError

    if name == "mps":
        raise UsageError("--device mps is not supported (float64 sampler maths); use --device cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA device")
    if name != "cpu" and not name.startswith("cuda"):
        raise UsageError(f"unknown --device {name!r}: use auto, cpu, cuda or cuda:N")
    if name == "cuda" and os.environ.get("LOCAL_RANK"):
        name = f"cuda:{int(os.environ['LOCAL_RANK'])}"  # one GPU per torchrun process
    return name
