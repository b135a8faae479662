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
