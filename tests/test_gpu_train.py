"""The GPU training call's pieces, run on the CPU: the data pack (read with OpenCV, as the lent machine
has no PyAV) and benchmarks/gpu_train.py's two phases (denoise, then distil) with its exported parts."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_prepared_dataset

from facenhance_cli.checkpoint import load_for_inference, save_checkpoint
from facenhance_cli.config import load_preset
from facenhance_cli.nn.unet import build_network

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_packed_data_trains_a_teacher_and_a_student_without_pyav(tmp_path, monkeypatch):
    root = make_prepared_dataset(tmp_path / "prepared", n_train=2, n_test=1, n_frames=4, size=32)
    packed = tmp_path / "train.tar"
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "pack_train_data.py"), str(root), str(packed)], check=True
    )
    with tarfile.open(packed) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    data = tmp_path / "unpacked" / "data"
    manifest = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    assert [e["split"] for e in manifest] == ["train", "train"]  # the test split stays home

    import facenhance_cli.video as video
    from facenhance_cli.data import FrameDataset, read_manifest

    config = load_preset("tiny").replace(**{"unet.image_size": 32, "sampling.steps": 4})
    monkeypatch.setattr(video, "has_pyav", lambda: False)  # as on the GPU machine
    packed_frames = FrameDataset(read_manifest(data), config).clip(0).high
    original = FrameDataset(read_manifest(root), config).clip(0).high
    assert packed_frames.shape == original.shape
    assert np.abs(packed_frames.astype(int) - original.astype(int)).mean() < 3  # H.264 at crf 18
    init = save_checkpoint(tmp_path / "init.pt", config, build_network(config).state_dict())
    out = tmp_path / "out"
    argv = [str(data), str(out), "--recipe", "distill", "--init", str(init), "--device", "cpu", "--max-batch", "4",
            "--workers", "2",
            "--denoise-minutes", "0.01", "--distill-minutes", "0.01", "--runs", str(tmp_path / "runs")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["gpu_train.py", *argv])
    load_script("gpu_train").main()
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["batch"] == 4
        and summary["denoise"]["final_step"] > 0
        and summary["distill"]["final_step"] > 0
    )
    assert len(list(out.iterdir())) <= 8  # what the device tool brings back
    for name, steps in (("teacher", 4), ("student", 1)):
        parts = sorted(out.glob(f"{name}.pt.part-*"))
        (tmp_path / f"{name}.pt").write_bytes(b"".join(p.read_bytes() for p in parts))
        model = load_for_inference(tmp_path / f"{name}.pt")
        assert model.config.sampling.steps == steps and model.config.training.batch_size == 4
    assert load_for_inference(tmp_path / "student.pt").meta["distilled_from"].startswith("teacher (ddim 4")


def test_the_student_can_start_as_another_network(tmp_path):
    """--student-init: the student takes that model's network (a patch-2 one here) and weights, and the
    teacher's training settings; without it the student is the teacher's network and weights."""
    import argparse

    from test_patch import FOLDED, tiny

    teacher_config = tiny().replace(**{"training.batch_size": 4, "sampling.steps": 4})
    teacher_state = build_network(teacher_config).state_dict()
    folded = tiny(**FOLDED)
    student_net = build_network(folded)
    start = save_checkpoint(tmp_path / "student.pt", folded, student_net.state_dict())
    gpu_train = load_script("gpu_train")
    config, state = gpu_train.student_start(
        argparse.Namespace(student_init=str(start)), teacher_config, teacher_state
    )
    assert config.unet == folded.unet and config.unet.patch_size == 2
    assert config.training.objective == "distill" and config.sampling.steps == 1
    assert config.training.batch_size == 4  # the teacher's settings
    assert state.keys() == student_net.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in student_net.state_dict().items())
    config, state = gpu_train.student_start(
        argparse.Namespace(student_init=None), teacher_config, teacher_state
    )
    assert config.unet == teacher_config.unet and state is teacher_state


@pytest.mark.slow
def test_the_truth_recipe_trains_the_one_step_model_on_the_truth_and_restores_its_gate(tmp_path, monkeypatch):
    """--recipe truth (the shipped v8's): one run at t = 999 with the detail term, the gate off in training and
    the init model's gate in the exported student, the target motion and edit margin asked for; its parts
    rejoin into a loadable one-step model."""
    from test_network import EDM_MASKED

    root = make_prepared_dataset(tmp_path / "prepared", n_train=2, n_test=1, n_frames=4, size=32)
    overrides = {**EDM_MASKED, "unet.image_size": 32, "sampling.steps": 1, "unet.use_flow_frame": True}
    config = load_preset("tiny").replace(**{**overrides, "conditioning.edit_gate_levels": 12.0})
    init = save_checkpoint(tmp_path / "init.pt", config, build_network(config).state_dict())
    out = tmp_path / "out"
    argv = [str(root), str(out), "--init", str(init), "--device", "cpu", "--max-batch", "2", "--workers", "1",
            "--truth-minutes", "0.01", "--runs", str(tmp_path / "runs"),
            "--target-motion", "registered", "--edit-margin", "24"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["gpu_train.py", *argv])
    load_script("gpu_train").main()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"] == "truth" and summary["truth"]["final_step"] > 0
    assert not list(out.glob("teacher.pt*"))
    (tmp_path / "student.pt").write_bytes(
        b"".join(p.read_bytes() for p in sorted(out.glob("student.pt.part-*")))
    )
    student = load_for_inference(tmp_path / "student.pt")
    trained = student.config.training
    assert trained.min_timestep == 999 and trained.detail_weight == 10.0 and trained.align_targets
    assert student.config.conditioning.edit_gate_levels == 12.0 and student.config.unet.use_flow_frame
    assert trained.target_motion == "registered" and student.config.conditioning.edit_margin == 24
    run_config = torch.load(tmp_path / "runs" / "student" / "last.pt", weights_only=True)["config"]
    assert run_config["conditioning"]["edit_gate_levels"] == 0.0  # off while training
