"""The structure the maintainers check, kept by tests: module and function sizes, one builder of the
conditioning, Algorithm 3 in one place, few `Any`s in the pipelines and core; mypy and ruff clean."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "facenhance_cli"
SOURCES = sorted(PACKAGE.rglob("*.py"))
PIPELINES_AND_CORE = ["enhance", "training", "evaluation", "diffusion", "nn", "conditioning.py", "data.py"]


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the end (a Typer command's options are its
    signature, not its body)."""
    statements = node.body
    if statements and isinstance(statements[0], ast.Expr) and isinstance(statements[0].value, ast.Constant):
        statements = statements[1:] or statements
    end = node.end_lineno or node.lineno
    return end - statements[0].lineno + 1


def test_no_module_over_500_lines_and_no_function_body_over_60():
    long_files = [
        f"{p.relative_to(PACKAGE)} ({n})" for p in SOURCES if (n := len(p.read_text().splitlines())) > 500
    ]
    long_bodies = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and body_lines(node) > 60:
                long_bodies.append(f"{path.relative_to(PACKAGE)}:{node.name} ({body_lines(node)})")
    assert not long_files and not long_bodies, (long_files, long_bodies)


def test_the_conditioning_is_built_in_one_place_and_algorithm_3_runs_in_diffusion():
    # backends.py re-assembles one from an exported graph's tensors; costs.py builds a dummy to count FLOPs.
    allowed = {"conditioning.py", "backends.py", "costs.py"}
    built = [p.name for p in SOURCES if "Conditioning(" in p.read_text() and p.name not in allowed]
    frame_calls = [
        str(p.relative_to(PACKAGE))
        for p in SOURCES
        if re.search(r"\bgenerate_frame\(", p.read_text()) and p.parent.name != "diffusion"
    ]
    assert not built and not frame_calls, (built, frame_calls)


def test_the_pipelines_and_core_name_their_types():
    paths = [
        p
        for part in PIPELINES_AND_CORE
        for p in ((PACKAGE / part).rglob("*.py") if (PACKAGE / part).is_dir() else [PACKAGE / part])
    ]
    count = sum(len(re.findall(r"\bAny\b", p.read_text())) for p in paths)
    assert count <= 5, f"{count} uses of Any in the pipelines and core"


@pytest.mark.slow
@pytest.mark.parametrize("tool", [["mypy", "facenhance_cli"], ["ruff", "check", "facenhance_cli", "tests"]])
def test_the_package_is_clean(tool):
    """mypy (check_untyped_defs, pyproject.toml) and ruff, as configured; run in CI with the slow tests."""
    result = subprocess.run([sys.executable, "-m", *tool], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
