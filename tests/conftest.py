"""Shared fixtures: where ../shared is, and third-party weights that fail in CI but skip locally when missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import missing, require_weight_file

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACENHANCE_SHARED", REPO.parent / "shared"))
FACES = SHARED / "data" / "faces"


@pytest.fixture(scope="session", autouse=True)
def _weights_env() -> None:
    """Point the weights lookup at ../shared/weights when the caller did not say otherwise."""
    if not os.environ.get("FACENHANCE_WEIGHTS") and (SHARED / "weights").is_dir():
        os.environ["FACENHANCE_WEIGHTS"] = str(SHARED / "weights")


@pytest.fixture(scope="session", autouse=True)
def _reference_backend(tmp_path_factory) -> None:
    """`enhance` runs on torch, the reference, unless a test asks for another backend; converted graphs
    are cached in a temporary folder, not the user's cache."""
    os.environ["FACENHANCE_BACKEND"] = "torch"
    os.environ["FACENHANCE_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def require_openvino() -> None:
    """OpenVINO (the optional `openvino` extra): CI installs it, so there a missing one fails."""
    from facenhance_cli.backends import openvino_installed

    if not openvino_installed():
        missing("openvino is not installed: pip install -e '.[openvino]'")


@pytest.fixture
def require_weight():
    """`require_weight(name)` -> Path of a third-party file found through the weights lookup."""
    return require_weight_file


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """../shared/data/faces (clips/, neutral/, photos/)."""
    if not FACES.is_dir():
        missing(f"shared face data not found at {FACES} (set FACENHANCE_SHARED)")
    return FACES
