"""The command line's fixed choices as Enums: Typer lists them in --help and Click refuses anything else.

Precision, Sampler, Spacing and GateScope are built from config's Literals (one source of truth; config imports
only the standard library). Backend, Layout, LowAlignment, Landmarks and Detector mirror backends.BACKENDS, prepare's
LAYOUTS and LOW_ALIGNMENTS and faces' LANDMARK_BACKENDS and DETECTORS, kept here so that `facenhance --help` imports none
of those modules; tests/test_help_and_build.py checks that they agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum, EnumMeta
from typing import TYPE_CHECKING, Any, get_args

from facenhance_cli import config


class _FromValues(EnumMeta):
    """`class X(str, Enum, metaclass=_FromValues, values=...)`: one member per value, named as the value
    ('-' as '_'). A class statement, not `Enum("X", ...)`, so that mypy accepts X as a type."""

    @classmethod
    def __prepare__(metacls, cls: str, bases: tuple[type, ...], **kwds: Any) -> Any:  # type: ignore[override]
        values: Iterable[str] = kwds.pop("values", ())
        namespace = super().__prepare__(cls, bases, **kwds)
        for value in values:
            namespace[value.replace("-", "_")] = value
        return namespace

    def __new__(metacls, cls: str, bases: tuple[type, ...], classdict: Any, **kwds: Any) -> Any:
        kwds.pop("values", None)  # used up by __prepare__
        return super().__new__(metacls, cls, bases, classdict, **kwds)

    if TYPE_CHECKING:  # members made from values are invisible to mypy: `Precision.fp32` is Any to it

        def __getattr__(cls, name: str) -> Any: ...


class Precision(str, Enum, metaclass=_FromValues, values=get_args(config.Precision)):
    """Autocast dtype: bf16 runs on the CPU too, fp16 needs CUDA."""


class Sampler(str, Enum, metaclass=_FromValues, values=get_args(config.SamplerName)):
    """DDIM (any steps and eta) or ancestral DDPM (all T steps)."""


class Spacing(str, Enum, metaclass=_FromValues, values=get_args(config.Spacing)):
    """DDIM timesteps: even in t (trailing) or denser at low noise (karras)."""


class GateScope(str, Enum, metaclass=_FromValues, values=get_args(config.GateScope)):
    """Where the expression gate holds a model's change back: its whole edit region, or the face (the ring by
    the gate's mean over the face)."""


class Backend(str, Enum):
    """What runs the network's forward pass: auto (openvino on the CPU when installed), torch or openvino."""

    auto = "auto"
    torch = "torch"
    openvino = "openvino"


class Layout(str, Enum):
    """How `prepare` reads subjects and expressions from its inputs."""

    auto = "auto"
    mug = "mug"
    flat = "flat"


class LowAlignment(str, Enum):
    """How `prepare` aligns each low frame: steady (frame 0's alignment moved with the head) or landmarks."""

    steady = "steady"
    landmarks = "landmarks"


class Landmarks(str, Enum):
    """The 68-point landmark backend."""

    auto = "auto"
    dlib = "dlib"
    face_alignment = "face-alignment"


class Detector(str, Enum):
    """The face detector."""

    auto = "auto"
    dlib = "dlib"
    blazeface = "blazeface"
