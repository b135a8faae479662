"""The weights lookup: flag > environment variable > platformdirs > package, and its missing-file message."""

from __future__ import annotations

import pytest

from facenhance_cli import weights
from facenhance_cli.errors import MissingWeightsError


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No FACENHANCE_* variables and a platformdirs folder inside tmp_path."""
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(weights.MODELS_ENV, raising=False)
    monkeypatch.setattr(weights, "user_weights_dir", lambda: tmp_path / "user" / "weights")
    monkeypatch.setattr(weights, "user_models_dir", lambda: tmp_path / "user" / "models")
    return tmp_path


def put(folder, relpath, data=b"x"):
    path = folder / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_priority_flag_then_env_then_user_dir(isolated, monkeypatch):
    rel = weights.WEIGHT_FILES["i3d"].relpath
    user = put(isolated / "user" / "weights", rel)
    assert weights.find_weight("i3d") == user
    env = put(isolated / "env", rel)
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(isolated / "env"))
    assert weights.find_weight("i3d") == env
    flag = put(isolated / "flag", "i3d_kinetics400_rgb.pt")  # a flat folder works too
    assert weights.find_weight("i3d", isolated / "flag") == flag


def test_missing_weight_message_names_file_sha_and_place(isolated):
    with pytest.raises(MissingWeightsError) as info:
        weights.find_weight("i3d")
    message = str(info.value)
    assert "i3d_kinetics400_rgb.pt" in message
    assert weights.WEIGHT_FILES["i3d"].sha256 in message
    assert str(isolated / "user" / "weights") in message and "FACENHANCE_WEIGHTS" in message
    assert "\n" not in message
    assert not weights.weight_available("i3d")


def test_dlib_models_fall_back_to_the_installed_package(isolated):
    path = weights.find_weight("dlib_landmarks68")
    assert path.name == "shape_predictor_68_face_landmarks.dat" and path.is_file()


def test_find_model_by_path_run_folder_and_name(isolated, monkeypatch):
    run = isolated / "run"
    put(run, "final.pt")
    assert weights.find_model(str(run)) == run / "final.pt"
    put(isolated / "user" / "models", "mine.pt")
    assert weights.find_model("mine") == isolated / "user" / "models" / "mine.pt"
    other = put(isolated / "env_models", "mine.pt")
    monkeypatch.setenv(weights.MODELS_ENV, str(isolated / "env_models"))
    assert weights.find_model("mine") == other
    with pytest.raises(MissingWeightsError, match="model 'absent' not found"):
        weights.find_model("absent")
    with pytest.raises(MissingWeightsError, match="not found"):
        weights.find_model(str(isolated / "nope.pt"))
    assert weights.shipped_models_dir() in weights.model_search_dirs()
