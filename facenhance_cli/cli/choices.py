"""The command line's fixed choices as Enums: Typer lists them in --help and Click refuses anything else.

Each mirrors the Literal or tuple of the module it feeds (config.Precision, config.SamplerName,
config.Spacing, backends.BACKENDS, prepare's LAYOUTS, faces' LANDMARK_BACKENDS and DETECTORS);
tests/test_help_and_build.py checks that they agree. Kept here, not built from those modules, so that
`facenhance --help` imports none of them.
"""

from __future__ import annotations

from enum import Enum


class Precision(str, Enum):
    """Autocast dtype: bf16 runs on the CPU too, fp16 needs CUDA."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Backend(str, Enum):
    """What runs the network's forward pass: auto (openvino on the CPU when installed), torch or openvino."""

    auto = "auto"
    torch = "torch"
    openvino = "openvino"


class Sampler(str, Enum):
    """DDIM (any steps and eta) or ancestral DDPM (all T steps)."""

    ddim = "ddim"
    ddpm = "ddpm"


class Spacing(str, Enum):
    """DDIM timesteps: even in t (trailing) or denser at low noise (karras)."""

    trailing = "trailing"
    karras = "karras"


class Layout(str, Enum):
    """How `prepare` reads subjects and expressions from its inputs."""

    auto = "auto"
    mug = "mug"
    flat = "flat"


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
