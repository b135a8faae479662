"""`facenhance train --teacher`: a student that reproduces its teacher's samples in fewer steps."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import make_prepared_dataset
from typer.testing import CliRunner

from facenhance_cli.checkpoint import load_for_inference
from facenhance_cli.cli import app
from facenhance_cli.config import load_preset
from facenhance_cli.errors import UsageError
from facenhance_cli.training.distill import Teacher, check_teacher, distill_loss

TINY = ["--preset", "tiny", "--set", "unet.image_size=32", "--set", "sampling.steps=4"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_prepared_dataset(tmp_path_factory.mktemp("prepared"), n_train=2, n_test=1, n_frames=4)


@pytest.fixture(scope="module")
def teacher_dir(data_dir, tmp_path_factory):
    """A tiny 4-step teacher, trained a few steps."""
    run = tmp_path_factory.mktemp("teacher")
    result = run_cli("train", data_dir, "-o", run, *TINY, "--max-steps", 3, "--quiet")
    assert result.exit_code == 0, result.output
    return run


def run_cli(*args):
    return CliRunner().invoke(app, list(map(str, args)))


def tiny(**overrides):
    return load_preset("tiny").replace(**{"unet.image_size": 32, "sampling.steps": 4, **overrides})


def test_a_student_starts_as_its_teacher_and_samples_in_one_step(data_dir, teacher_dir, tmp_path):
    """--teacher alone: the student is the teacher's network and weights, objective distill, one step; the
    checkpoint names its teacher; the same command resumes, and a resume without the teacher is refused."""
    cmd = ["train", data_dir, "-o", tmp_path / "s", "--teacher", teacher_dir, "--quiet",
           "--set", "training.log_every=1", "--set", "training.validate_every=2"]  # fmt: skip
    result = run_cli(*cmd, "--max-steps", 2)
    assert result.exit_code == 0, result.output
    saved = torch.load(tmp_path / "s" / "last.pt", weights_only=True)
    teacher = torch.load(teacher_dir / "final.pt", weights_only=True)
    assert saved["config"]["training"]["objective"] == "distill"
    assert saved["config"]["sampling"]["steps"] == 1
    assert saved["config"]["unet"] == teacher["config"]["unet"]
    assert saved["meta"]["distilled_from"] == f"{teacher_dir.name}/final (ddim 4 trailing)"
    log = [json.loads(line) for line in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    assert any("val_loss" in r for r in log) and all(r.get("loss", 0) >= 0 for r in log)
    assert load_for_inference(tmp_path / "s" / "final.pt").config.sampling.steps == 1
    again = run_cli(*cmd, "--max-steps", 3)
    assert again.exit_code == 0, again.output
    assert torch.load(tmp_path / "s" / "last.pt", weights_only=True)["training"]["step"] == 3
    orphan = run_cli("train", data_dir, "-o", tmp_path / "s", "--max-steps", 4, "--quiet")
    assert orphan.exit_code == 2 and "give --teacher" in orphan.output
    plain = run_cli("train", data_dir, "-o", tmp_path / "p", *TINY, "--max-steps", 1, "--quiet")
    assert plain.exit_code == 0, plain.output
    wrong = run_cli("train", data_dir, "-o", tmp_path / "p", "--teacher", teacher_dir, "--max-steps", 2, "-q")
    assert wrong.exit_code == 2 and "not started as a distillation" in wrong.output


def test_distillation_closes_the_gap_to_the_teacher(data_dir, teacher_dir, tmp_path):
    """Twenty student steps lower the validation loss, the student's one-step sample against the teacher's."""
    cmd = ["train", data_dir, "-o", tmp_path / "s", "--teacher", teacher_dir, "--quiet", "--lr", "3e-3",
           "--set", "training.validate_every=20", "--set", "training.ema_decay=0"]  # fmt: skip
    first = run_cli(*cmd, "--max-steps", 1)
    assert first.exit_code == 0, first.output
    assert run_cli(*cmd, "--max-steps", 20).exit_code == 0
    log = [json.loads(line) for line in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in log if "val_loss" in r]
    assert len(val) == 2 and val[1] < 0.8 * val[0], val


def test_a_folded_student_starts_from_its_teachers_levels(data_dir, teacher_dir, tmp_path):
    """--teacher with a patch-2 network: the shared levels start as the teacher's (nn/transplant.py)."""
    fold = ["--set", "unet.patch_size=2", "--set", "unet.channel_mult=[1,2,2,4,4]",
            "--set", "unet.attention_levels=[3]", "--set", "unet.image_size=64"]  # fmt: skip
    tiny64 = ["--preset", "tiny", "--set", "unet.image_size=64", "--set", "sampling.steps=4"]
    teacher = tmp_path / "t"
    assert run_cli("train", data_dir, "-o", teacher, *tiny64, "--max-steps", 1, "-q").exit_code == 0
    result = run_cli("train", data_dir, "-o", tmp_path / "s", "--teacher", teacher, *fold,
                     "--max-steps", 1, "--lr", "1e-12", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    student = torch.load(tmp_path / "s" / "final.pt", weights_only=True)
    source = torch.load(teacher / "final.pt", weights_only=True)["ema"]
    assert student["config"]["unet"]["patch_size"] == 2
    for key in ("down.0.blocks.0.conv1.weight", "up.0.blocks.0.conv1.weight", "middle.1.conv1.weight"):
        source_key = key.replace("down.0.", "down.1.")
        assert torch.allclose(student["ema"][key], source[source_key], atol=1e-6), key
    unrelated = run_cli("train", data_dir, "-o", tmp_path / "u", "--teacher", teacher, *fold,
                        "--set", "unet.channel_mult=[1,2,2,4,8]", "--max-steps", 1, "-q")  # fmt: skip
    assert unrelated.exit_code == 2 and "does not fit" in unrelated.output


def test_teachers_that_cannot_be_distilled_are_refused():
    """A stochastic teacher, other inputs, or a student with as many steps: one UsageError, before training."""
    student = tiny(**{"sampling.steps": 1})
    network = torch.nn.Identity()
    check_teacher(Teacher(network, tiny(), "t.pt"), student)  # the accepted case
    cases = [
        (tiny(**{"sampling.eta": 0.5}), student, "deterministic"),
        (tiny(**{"conditioning.prev_noise_std": 0.3}), student, "conditioning"),
        (tiny(**{"unet.use_identity": False}), student, "unet inputs"),
        (tiny(), tiny(**{"sampling.steps": 4}), "fewer"),
    ]
    for teacher_config, student_config, message in cases:
        with pytest.raises(UsageError, match=message):
            check_teacher(Teacher(network, teacher_config, "t.pt"), student_config)


def test_distill_loss_counts_only_the_edit_region():
    """Pixels outside the edit mask add nothing; inside, the mean squared difference."""
    student, teacher = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    teacher[..., :2] = 1.0  # differ on the left half only
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 2:] = 1.0
    assert float(distill_loss(student, teacher, mask)) == 0.0
    mask[..., :2] = 1.0
    assert float(distill_loss(student, teacher, mask)) == pytest.approx(0.5)
    assert float(distill_loss(student, teacher, None)) == pytest.approx(0.5)


def test_a_student_run_with_other_steps_is_warned_and_models_names_its_teacher(
    data_dir, teacher_dir, tmp_path
):
    """enhance --steps N on a one-step student warns (and fails under --strict, writing nothing); `models`
    shows what it was distilled from, by the teacher's name, not this machine's path."""
    result = run_cli(
        "train", data_dir, "-o", tmp_path / "s", "--teacher", teacher_dir, "--max-steps", 1, "-q"
    )
    assert result.exit_code == 0, result.output
    models = tmp_path / "models"
    models.mkdir()
    (models / "student.pt").write_bytes((tmp_path / "s" / "final.pt").read_bytes())
    listed = run_cli("models", "--models-dir", models, "--json")
    row = next(r for r in json.loads(listed.output) if r["name"] == "student")
    assert row["steps"] == 1 and row["distilled_from"] == f"{teacher_dir.name}/final (ddim 4 trailing)"
    clip = data_dir / "s00_clip"
    args = ["enhance", clip / "low.mkv", "-i", clip / "identity.png", "--model", models / "student.pt"]
    warned = run_cli(*args, "-o", tmp_path / "a.mkv", "--steps", 2)
    assert warned.exit_code == 0 and "distilled to sample in 1 step; --steps 2" in warned.output
    strict = run_cli(*args, "-o", tmp_path / "b.mkv", "--steps", 2, "--strict")
    assert strict.exit_code == 1 and not (tmp_path / "b.mkv").exists()
    quiet = run_cli(*args, "-o", tmp_path / "c.mkv")
    assert quiet.exit_code == 0 and "distilled" not in quiet.output


def test_init_from_a_student_without_a_teacher_fine_tunes_it_as_a_denoiser(data_dir, teacher_dir, tmp_path):
    """--init STUDENT alone starts an ordinary (denoising) run from the student's weights."""
    first = run_cli("train", data_dir, "-o", tmp_path / "s", "--teacher", teacher_dir, "--max-steps", 1, "-q")
    assert first.exit_code == 0, first.output
    tuned = run_cli("train", data_dir, "-o", tmp_path / "d", "--init", tmp_path / "s", "--max-steps", 1, "-q")
    assert tuned.exit_code == 0, tuned.output
    saved = torch.load(tmp_path / "d" / "last.pt", weights_only=True)
    assert saved["config"]["training"]["objective"] == "denoise" and "distilled_from" not in saved["meta"]
