"""The command line as a whole: every command and option has help, --help is instant, presets lists costs."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import typer
from typer.core import TyperArgument, TyperOption
from typer.testing import CliRunner

from facenhance_cli.cli import app

COMMANDS = ["prepare", "train", "enhance", "eval", "presets", "models", "export"]


def click_command():
    return typer.main.get_command(app)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_help(name):
    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output) > 200


def test_every_command_and_option_has_help_text():
    group = click_command()
    assert set(COMMANDS) <= set(group.commands)
    missing = []
    for name, command in group.commands.items():
        if not (command.help or "").strip():
            missing.append(name)
        for param in command.params:
            if isinstance(param, TyperOption) and not (param.help or "").strip():
                missing.append(f"{name} {param.opts[0]}")
            if isinstance(param, TyperArgument) and not (getattr(param, "help", "") or "").strip():
                missing.append(f"{name} {param.name}")
    assert missing == []


def test_root_help_is_fast_and_lists_commands():
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "facenhance_cli", "--help"], capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout
    assert elapsed < 3.0  # includes interpreter start-up; the command itself imports no torch
    check = subprocess.run(
        [sys.executable, "-c", "import sys, facenhance_cli.cli; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
    )
    assert check.stdout.strip() == "False"


def test_presets_lists_the_three_presets_with_costs():
    result = CliRunner().invoke(app, ["presets", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert set(rows) == {"paper", "small", "tiny"}
    assert rows["paper"]["parameters"] > 100e6 and rows["paper"]["gflop_per_call"] > 150
    assert rows["small"]["parameters"] <= 15e6
    assert rows["tiny"]["gflop_per_call"] < rows["small"]["gflop_per_call"] < rows["paper"]["gflop_per_call"]


def test_models_lists_a_checkpoint_from_the_models_dir(tmp_path):
    from facenhance_cli.checkpoint import save_checkpoint
    from facenhance_cli.config import load_preset
    from facenhance_cli.nn.unet import build_network

    config = load_preset("tiny")
    save_checkpoint(
        tmp_path / "mine.pt", config, build_network(config).state_dict(), meta={"trained_on": "synthetic"}
    )
    (tmp_path / "broken.pt").write_text("nope")
    result = CliRunner().invoke(app, ["models", "--models-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["mine"]["preset"] == "tiny" and rows["mine"]["trained_on"] == "synthetic"
    assert rows["mine"]["sampler"] == "ddim"
    assert "error" in rows["broken"]


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("facenhance ")


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["enhance", "x.mp4"], "--output"),
        (["train", "d", "-o", "r", "--max-steps", "abc"], "--max-steps"),
        (["nosuch"], "No such command"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args, fragment):
    result = subprocess.run([sys.executable, "-m", "facenhance_cli", *args], capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0]
