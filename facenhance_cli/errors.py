"""Errors a user can cause: the CLI prints their message on one line and exits non-zero, no traceback."""

from __future__ import annotations

import errno


class FacenhanceError(Exception):
    """Base class for every error whose message is meant for the user (exit code 1)."""

    exit_code = 1


class UsageError(FacenhanceError):
    """Bad arguments or option combinations (exit code 2)."""

    exit_code = 2


class InputError(FacenhanceError):
    """A missing, unreadable or unsuitable input file (video, image, data folder)."""


class CheckpointError(FacenhanceError):
    """A file that is not a facenhance checkpoint, or one of a newer format."""


class MissingWeightsError(FacenhanceError):
    """A third-party weight file or a facenhance model that cannot be found locally."""


class NoFaceError(InputError):
    """No usable face in an image or video."""


def first_line(exc: BaseException, default: str = "") -> str:
    """The first line of an exception's message (stripped), or `default` when it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else default


def one_line(exc: BaseException) -> str:
    """An exception as one line for a report: our own and OS errors as their message, others with their type."""
    if isinstance(exc, (FacenhanceError, OSError)):
        return first_line(exc, type(exc).__name__)
    first = first_line(exc)
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def is_interruption(exc: BaseException) -> bool:
    """True for a read or write cut short by a signal (EINTR): Ctrl-C or SIGTERM arrived while a C library
    (ffmpeg, OpenCV) waited, e.g. on a FIFO with no writer, and that library reported it as an error."""
    return isinstance(exc, InterruptedError) or getattr(exc, "errno", None) == errno.EINTR


def raise_if_interrupted(exc: BaseException) -> None:
    """Re-raise an interruption (see `is_interruption`) as KeyboardInterrupt: a signal ends the run (exit
    130, the batch stops, temporary outputs removed) instead of failing one input."""
    if is_interruption(exc):
        raise KeyboardInterrupt from None


_signals_received: list[int] = []  # SIGTERMs seen by the CLI's handler (cli.main), oldest first


def note_signal(signum: int) -> None:
    """Record that a terminating signal arrived (the CLI's handler calls this before raising)."""
    _signals_received.append(signum)


def stop_if_signalled() -> None:
    """KeyboardInterrupt when a terminating signal arrived earlier: a batch checks before each input, so
    a signal that a library swallowed (reported as some other error) still stops the batch."""
    if _signals_received:
        raise KeyboardInterrupt
