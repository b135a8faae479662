"""Errors a user can cause: the CLI prints their message on one line and exits non-zero, no traceback."""

from __future__ import annotations


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
