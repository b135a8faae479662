"""Issue 25: the CLI fuzzed. Every option of every command (read from the Typer app, so a new option is
fuzzed too) gets values drawn from typed strategies: valid, boundary, out of range, nan/inf, empty, wrong
type and odd paths, on tiny inputs (a 2-frame 64x64 video, a 32x32 untrained tiny model, a prepared
folder of 2 clips). Each case runs the console script's `main` in-process, in its own folder, and must:

- exit 0, 1 or 2, with no traceback, no `internal error` and none of the OS's words for a path
  (`File exists`, `Not a directory`, `Interrupted system call`) in its output; a usage error (exit 2)
  is one `error:` line,
- leave every input byte-identical,
- leave no output file, or only complete ones (videos and images decode, checkpoints load with
  weights_only, JSON parses), and no temporary or probe file.

Seeded: case i is always the same command line; a failure prints it with how to rerun it
(`FACENHANCE_FUZZ_CASES=12,40 python -m pytest tests/test_fuzz_cli.py -m ""`). The default run takes
the first cases for DEFAULT_SECONDS, the slow one SLOW_CASES of them. What it found (2000 cases of seeds
25 to 27) is kept as fixed cases in tests/test_option_values.py: `prepare --size 100000` and
`prepare --identity-only --crop-scale nan` were internal errors, `eval /dev/null` said "Not a
directory: /dev/null".

Left out on purpose (legal values that are merely expensive, or that touch the machine): `--compile`
without a flag that refuses it first, `train` without a small `--max-steps`, presets other than tiny,
sizes and counts large enough to be legal and slow (`--frames 5000`), `weights get` of a file that is
fetched with pip (network), `/` or `/dev` paths as outputs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import pytest
from helpers import make_prepared_dataset, synthetic_clip
from typer.testing import CliRunner

from facenhance_cli.cli import app
from facenhance_cli.video import write_image, write_video

SEED = 25
DEFAULT_SECONDS = 4.0  # the default run: as many cases as fit, then stop (at least MIN_CASES)
MIN_CASES = 8
SLOW_CASES = 300  # about a minute
CASE_SECONDS = 60  # a case that runs longer than this hangs, as far as the fuzz is concerned
CASES_ENV = "FACENHANCE_FUZZ_CASES"
SIZE = 32
VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}

# -- the inputs every case gets a fresh copy of ---------------------------------------------------------


@pytest.fixture(scope="module")
def master(tmp_path_factory) -> Path:
    return make_inputs(tmp_path_factory.mktemp("fuzz-inputs"))


def make_inputs(root: Path) -> Path:
    """The tiny inputs: videos, images, a model, a run folder, a prepared folder, CSV, TOML and odd files."""
    from facenhance_cli.checkpoint import save_checkpoint
    from facenhance_cli.config import load_preset
    from facenhance_cli.nn.unet import build_network

    _high, low, identity = synthetic_clip(2, size=SIZE, low_size=64, seed=1)
    write_video(root / "low.mp4", low, 25)
    write_video(root / "b.mkv", low[::-1], 25, lossless=True)
    write_image(root / "id.png", identity)
    write_image(root / "gray.png", identity.mean(axis=2, keepdims=True).repeat(3, axis=2).astype("uint8"))
    (root / "frames").mkdir()
    for n, frame in enumerate(low):
        write_image(root / "frames" / f"{n:04d}.png", frame)
    config = load_preset("tiny").replace(**{"unet.image_size": SIZE, "sampling.steps": 1})
    state = build_network(config).state_dict()
    save_checkpoint(root / "tiny.pt", config, state)  # as helpers.save_tiny_model, built once
    training = {"model": state, "optimizer": {}, "scaler": None, "step": 1, "best_val": None}
    save_checkpoint(root / "run" / "last.pt", config, state, {"step": 1}, training)
    save_checkpoint(root / "run" / "final.pt", config, state, {"step": 1})
    make_prepared_dataset(root / "data", n_train=1, n_test=1, n_frames=2, size=SIZE)
    (root / "pairs.csv").write_text("low,identity,output\nlow.mp4,id.png,paired.mp4\n")
    (root / "eval_pairs.csv").write_text("gen,gt\ndata/s00_clip/high.mkv,data/s01_clip/high.mkv\n")
    (root / "tiny.toml").write_text(
        (Path(__file__).resolve().parents[1] / "models" / "presets" / "tiny.toml")
        .read_text()
        .replace("image_size = 192", f"image_size = {SIZE}")
    )
    (root / "split.json").write_text(json.dumps({"train": ["s00"], "test": ["s01"]}))
    (root / "empty.mp4").write_bytes(b"")
    (root / "garbage.mp4").write_bytes(b"\x00\x01not a video" * 20)
    (root / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "garbage.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    (root / "garbage.toml").write_text("[unet\nimage_size = ")
    (root / "afile").write_text("a file where a folder is expected\n")
    (root / "folder").mkdir()
    (root / "ünï cödé.mp4").write_bytes((root / "low.mp4").read_bytes())
    return root


def hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# -- typed strategies -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Values:
    """What to draw for one option: `valid` values (placeholders {in} and {out} are the case's input and
    output folders, {shared} the inputs every case reads and none writes) and `odd` ones on top of the
    type's own (boundary, out of range, nan, wrong type)."""

    valid: tuple[str, ...] = ()
    odd: tuple[str, ...] = ()
    typed: bool = True  # also draw the type's generic odd values (False: they are legal and too slow)


INT_ODD = (
    "0",
    "-1",
    "-1000000",
    "1000000000000",
    str(2**63),
    str(-(2**63) - 1),
    "1.5",
    "x",
    "",
    "0x10",
    "1e3",
)
FLOAT_ODD = (
    "0",
    "-0",
    "-1",
    "1e-12",
    "1e308",
    "-1e308",
    "1e400",
    "nan",
    "inf",
    "-inf",
    "NaN",
    "x",
    "",
    "1,5",
)
STR_ODD = ("", " ", "x" * 300, "é", "-", "a/b", "--help-not")
IN_PATHS = (
    "",
    ".",
    "missing.mp4",
    "{in}/folder",
    "{in}/empty.mp4",
    "{in}/garbage.mp4",
    "{in}/afile/x.mp4",
    "{in}/ünï cödé.mp4",
    "/dev/null",
    "x" * 300,
    "-",
)
OUT_PATHS = (
    "",
    ".",
    "{out}/new",
    "{out}/o.mp4",
    "{in}/afile/x.mp4",
    "{in}/afile",
    "{in}/low.mp4",
    "{in}/folder",
    "{out}/" + "x" * 300 + ".mp4",
    "{out}/ünï cödé.mkv",
    "{out}/o.txt",
)

# (command, option or argument name) -> values; anything not listed gets its type's defaults.
HINTS: dict[tuple[str, str], Values] = {
    # enhance
    ("enhance", "low"): Values(
        ("{in}/low.mp4", "{in}/b.mkv", "{in}/frames", "{in}/data", "{in}/data/s00_clip"), IN_PATHS
    ),
    ("enhance", "--identity"): Values(("{in}/id.png",), (*IN_PATHS, "{in}/gray.png", "{in}/garbage.png")),
    ("enhance", "-o"): Values(("{out}/o.mp4", "{out}/outdir", "{out}/o.mkv"), OUT_PATHS),
    ("enhance", "--pairs"): Values(("{in}/pairs.csv",), (*IN_PATHS, "{in}/eval_pairs.csv", "{in}/id.png")),
    ("enhance", "--model"): Values(
        ("{in}/tiny.pt", "{in}/run"),
        ("", "nope", "{in}/garbage.pt", "{in}/folder", "{in}/data", "{in}/low.mp4"),
    ),
    ("enhance", "--models-dir"): Values(("{in}",), IN_PATHS),
    ("enhance", "--steps"): Values(("1", "2")),
    ("enhance", "--eta"): Values(("0", "1", "0.5")),
    ("enhance", "--strength"): Values(("1", "0.5")),
    ("enhance", "--seed"): Values(("0", "7")),
    ("enhance", "--batch-videos"): Values(("1", "2")),
    ("enhance", "--frames-per-call"): Values(("1", "8")),
    ("enhance", "--shard"): Values(
        ("0/1", "1/2"), ("0/0", "x", "1/0", "-1/2", "2/2", "0/99999999999999999999", "", "0/1/2")
    ),
    ("enhance", "--device"): Values(("cpu", "auto"), ("cuda", "cuda:7", "mps", "gpu", "")),
    ("enhance", "--threads"): Values(("1",)),
    ("enhance", "--weights-dir"): Values(("{shared}/folder",), IN_PATHS),  # shared: detectors are cached
    ("enhance", "--backend"): Values(("torch",)),
    ("enhance", "--precision"): Values(("fp32",), ("bf16", "fp16")),
    # train
    ("train", "data"): Values(("{in}/data",), (*IN_PATHS, "{in}")),
    ("train", "-o"): Values(("{out}/run",), (*OUT_PATHS, "{in}/data", "{in}/run")),
    ("train", "--preset"): Values(("tiny",), ("", "nope", "TINY")),  # paper and small: minutes a step
    ("train", "--config"): Values(("{in}/tiny.toml",), (*IN_PATHS, "{in}/garbage.toml", "{in}/tiny.pt")),
    ("train", "--set"): Values(
        (f"unet.image_size={SIZE}", "training.log_every=1", "sampling.steps=1"),
        (
            "x",
            "=",
            "unet.image_size=33",
            "unet.image_size=-32",
            "unet.image_size=abc",
            "training.lr=nan",
            "nope.key=1",
            "training.batch_size=0",
            "unet.channel_mult=[1]",
            "training.max_steps=1e9",
        ),
        typed=False,
    ),  # fmt: skip
    ("train", "--max-steps"): Values(("1", "2"), ("0", "-1", "x", "", "1.5"), typed=False),  # large: hours
    ("train", "--batch-size"): Values(("1", "2")),
    ("train", "--lr"): Values(("1e-4", "0.001")),
    ("train", "--init"): Values(("{in}/tiny.pt", "{in}/run"), ("", "nope", "{in}/garbage.pt", "{in}/folder")),
    ("train", "--device"): Values(("cpu",), ("cuda", "mps", "gpu", "")),
    ("train", "--precision"): Values(("fp32",), ("bf16", "fp16")),
    ("train", "--workers"): Values(("1", "2")),
    ("train", "--seed"): Values(("0", "3")),
    ("train", "--threads"): Values(("1",)),
    # prepare
    ("prepare", "inputs"): Values(("{in}/low.mp4", "{in}/frames", "{in}/b.mkv"), (*IN_PATHS, "{in}/data")),
    ("prepare", "--output"): Values(("{out}/prepared",), (*OUT_PATHS, "{in}/frames")),
    ("prepare", "--frames"): Values(
        ("2", "3"), ("0", "-1", "100000", "1000000000000", "x", "", "2.5"), typed=False
    ),
    ("prepare", "--size"): Values(
        ("32", "64"), ("0", "7", "-1", "100000", "1000000000000", "x", ""), typed=False
    ),
    ("prepare", "--low-size"): Values(
        ("16", "32"), ("0", "7", "-1", "100000", "1000000000000", "x", ""), typed=False
    ),
    ("prepare", "--segment"): Values(
        ("all", "first-half", "0:2", ":1"), ("", "5:3", "x", "0:0", "-1:", "99999999999999999999:", "1:2:3")
    ),
    ("prepare", "--split"): Values(("0.5", "1")),
    ("prepare", "--seed"): Values(("0", "3")),
    ("prepare", "--split-file"): Values(("{in}/split.json",), (*IN_PATHS, "{in}/garbage.toml")),
    ("prepare", "--workers"): Values(("1",), ("0", "-1", "1000000000000", "x", ""), typed=False),  # 2: spawns
    ("prepare", "--device"): Values(("cpu",), ("cuda", "gpu", "")),
    ("prepare", "--weights-dir"): Values(("{shared}/folder",), IN_PATHS),  # shared: detectors are cached
    ("prepare", "--subject-regex"): Values(
        ("(s\\d+)", "(?P<subject>[a-z]+)"), ("(", "[", "", "(?P<x>a)", "a{99999}")
    ),
    ("prepare", "--crop-scale"): Values(("1.8", "1.2")),
    ("prepare", "--smooth"): Values(("0", "1")),
    ("prepare", "--max-missing"): Values(("0.5", "1")),
    ("prepare", "--min-face"): Values(("1", "0")),
    ("prepare", "--landmarks"): Values(("auto", "dlib")),
    ("prepare", "--detector"): Values(("auto", "dlib")),
    # eval
    ("eval", "gen"): Values(("{in}/data", "{in}/data/s00_clip/high.mkv"), IN_PATHS),
    ("eval", "--gt"): Values(("{in}/data",), IN_PATHS),
    ("eval", "--identity"): Values(("{in}/id.png",), IN_PATHS),
    ("eval", "--low"): Values(("{in}/data",), IN_PATHS),
    ("eval", "--pairs"): Values(("{in}/eval_pairs.csv",), (*IN_PATHS, "{in}/pairs.csv")),
    ("eval", "--metrics"): Values(("psnr", "psnr,ssim"), ("", "nope", "psnr,,", "PSNR", ",")),
    ("eval", "--baseline"): Values(("none", "identity", "bicubic"), ("", "nope", "none,identity", ",")),
    ("eval", "--json"): Values(("{out}/r.json",), (*OUT_PATHS, "{in}/data/manifest.jsonl")),
    ("eval", "--csv"): Values(("{out}/r.csv",), OUT_PATHS),
    ("eval", "--sheet"): Values(("{out}/sheet.png",), OUT_PATHS),
    ("eval", "--fvd-frames"): Values(("2", "16")),
    ("eval", "--sheet-videos"): Values(("1", "2")),
    ("eval", "--sheet-frames"): Values(("1", "2")),
    ("eval", "--cache-dir"): Values(("{out}/cache",), OUT_PATHS),
    ("eval", "--weights-dir"): Values(("{shared}/folder",), IN_PATHS),  # shared: detectors are cached
    ("eval", "--device"): Values(("cpu",), ("cuda", "gpu", "")),
    ("eval", "--batch-size"): Values(("1", "4")),
    ("eval", "--threads"): Values(("1",)),
    # export
    ("export", "checkpoint"): Values(
        ("{in}/tiny.pt", "{in}/run", "{in}/run/last.pt"), (*IN_PATHS, "{in}/garbage.pt", "{in}/data")
    ),
    ("export", "-o"): Values(
        ("{out}/m.pt", "{out}/sub/m.pt"), (*OUT_PATHS, "{in}/tiny.pt", "{in}/run/last.pt", "{out}/m.txt")
    ),
    ("export", "--steps"): Values(("1", "4")),
    ("export", "--strength"): Values(("1", "0.5")),
    ("export", "--edit-gate-levels"): Values(("0",), ("12",)),
    ("export", "--trained-on"): Values(("MUG",)),
    # models, weights
    ("models", "--models-dir"): Values(("{in}", "{in}/run"), IN_PATHS),
    ("weights", "--weights-dir"): Values(("{in}",), IN_PATHS),
    ("weights get", "name"): Values(("openface_pdm", "blazeface"), ("", "nope", "I3D", "all ")),  # no pip
    ("weights get", "--weights-dir"): Values(("{out}/weights",), OUT_PATHS),
}

# Options that are legal and slow: drawn only together with a value that is refused first.
GUARDED = {
    ("enhance", "--compile"): ["--backend", "openvino", "--precision", "fp16"],
    ("train", "--compile"): ["--device", "mps"],
}
# What a command writes: a changed file under one of these is fine unless it is also under an input.
OUTPUTS = {
    ("enhance", "-o"), ("train", "-o"), ("prepare", "--output"), ("eval", "--json"), ("eval", "--csv"),
    ("eval", "--sheet"), ("eval", "--cache-dir"), ("export", "-o"), ("weights get", "--weights-dir"),
}  # fmt: skip
# Files an input names in turn (a pairs CSV's videos and images).
READS = {"{in}/pairs.csv": ["{in}/low.mp4", "{in}/id.png"], "{in}/eval_pairs.csv": ["{in}/data"]}
# Values a case starts from, each kept 9 times in 10 (a drawn value of the same option comes later and
# wins): the tiny model (the shipped one is slow), where outputs go, a short training run.
DEFAULTS = {
    "enhance": [("--model", "{in}/tiny.pt"), ("-o", "{out}/o.mp4"), ("-i", "{in}/id.png")],
    "train": [
        ("-o", "{out}/run"),
        ("--preset", "tiny"),
        ("--set", f"unet.image_size={SIZE}"),
        ("--device", "cpu"),
    ],
    "prepare": [("--output", "{out}/prepared"), ("--min-face", "1"), ("--frames", "3")],
    "eval": [("--gt", "{in}/data"), ("--metrics", "psnr"), ("--baseline", "none")],
    "export": [("-o", "{out}/m.pt")],
}
ALWAYS = {"train": [("--max-steps", "1")]}  # without it, train runs the preset's 200 steps
# How often each command is drawn: presets has one flag and costs a second (it counts every preset's
# FLOPs), `weights get` has one argument.
WEIGHTS = {
    "enhance": 8, "export": 3, "train": 3, "prepare": 3, "eval": 2, "models": 1, "weights": 1,
    "weights get": 0.5, "presets": 0.3,
}  # fmt: skip


@dataclass
class Param:
    """One option or argument of a command, as the fuzz sees it."""

    names: list[str]  # the option's flags ([] for an argument)
    key: str  # how HINTS names it: the first flag, or the argument's name
    kind: str  # int | float | str | path | choice | flag | paths | strs
    required: bool
    choices: tuple[str, ...] = ()
    off: str | None = None  # the secondary flag of --x/--no-x
    minimum: int | None = None


def _kind(annotation: object) -> tuple[str, tuple[str, ...]]:
    text = str(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "choice", tuple(str(m.value) for m in annotation)
    if annotation is bool:
        return "flag", ()
    if annotation is int:
        return "int", ()
    if annotation is float:
        return "float", ()
    if annotation is Path:
        return "path", ()
    if "list[pathlib.Path]" in text:
        return "paths", ()
    if "list[str]" in text:
        return "strs", ()
    return "str", ()


def command_table() -> dict[str, list[Param]]:
    """Every command (group commands as 'weights get') and its parameters, from the Typer app itself."""
    from typer.main import get_command

    table: dict[str, list[Param]] = {}

    def walk(group, prefix: str) -> None:
        for name, command in group.commands.items():
            full = f"{prefix}{name}"
            table[full] = [_param(p) for p in command.params]
            if hasattr(command, "commands"):
                walk(command, f"{full} ")

    walk(get_command(app), "")
    return table


def _param(p) -> Param:
    kind, choices = _kind(p.type_descriptor.annotation)
    if p.param_type_name == "argument":
        return Param([], p.name, kind, bool(p.required), choices, minimum=p.min)
    off = p.secondary_opts[0] if p.secondary_opts else None
    return Param(list(p.opts), p.opts[0], kind, bool(p.required), choices, off, p.min)


def draw_value(rng: random.Random, command: str, param: Param, valid: bool) -> str:
    """One value for `param`: from its valid pool, or from everything it should refuse or survive."""
    hint = HINTS.get((command, param.key), Values())
    kind = "path" if param.kind == "paths" else "str" if param.kind == "strs" else param.kind
    defaults = {
        "int": (("1", "2"), INT_ODD),
        "float": (("0.5", "1"), FLOAT_ODD),
        "str": (("x",), STR_ODD),
        "path": (("{out}/p",), IN_PATHS),
        "choice": (param.choices, ("", "X", param.choices[0].upper() + "x" if param.choices else "x")),
    }[kind]
    pool_valid = hint.valid or defaults[0]
    if valid:
        return rng.choice(pool_valid)
    odd = list(hint.odd) + (list(defaults[1]) if hint.typed or not hint.odd else [])
    if param.minimum is not None:  # just below the range Typer checks
        odd.append(str(param.minimum - 1))
    return rng.choice(odd if rng.random() < 0.8 else list(pool_valid))


@dataclass
class Case:
    index: int
    command: str
    argv: list[str]  # with {in} and {out} placeholders
    inputs: list[str] = field(default_factory=list)  # paths (placeholders) the command reads
    outputs: list[str] = field(default_factory=list)  # paths it may write

    def line(self) -> str:
        return "facenhance " + " ".join(_quote(a) for a in self.argv)


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./{}:=,+" for c in arg) else repr(arg)


def draw_case(index: int, commands: dict[str, list[Param]]) -> Case:
    """Case `index` of SEED: always the same command line.

    A third of the cases draw only valid values (the run goes deep: the model loads, files are written);
    half change one value to an odd one, so that each odd value reaches its own check; the rest draw
    odd values anywhere."""
    rng = random.Random(f"{SEED}:{index}")
    names = list(WEIGHTS)
    command = rng.choices(names, [WEIGHTS[n] for n in names])[0]
    mode = rng.choices(("valid", "single", "chaos"), (35, 50, 15))[0]
    params = commands[command]
    chosen = [p for p in params if rng.random() < (0.95 if p.required or not p.names else 0.3)]
    odd_one = rng.choice(params) if mode == "single" else None
    if odd_one is not None and odd_one not in chosen:
        chosen.append(odd_one)
    args: list[str] = []
    options: list[list[str]] = []
    guards: list[str] = []
    reads: list[str] = []
    writes: list[str] = []

    def note(key: str, value: str) -> str:
        (writes if (command, key) in OUTPUTS else reads).append(value)
        reads.extend(READS.get(value, []))
        return value

    for flag, value in ALWAYS.get(command, []):
        options.append([flag, note(flag, value)])
    for flag, value in DEFAULTS.get(command, []):  # first: a drawn value of the same option wins
        if rng.random() < 0.9:
            options.append([flag, note(flag, value)])
    drawn: list[list[str]] = []
    for param in params:
        if param not in chosen:
            continue
        valid = mode == "valid" or (mode == "single" and param is not odd_one) or rng.random() < 0.5
        if not param.names:  # an argument
            count = rng.choice((1, 1, 2)) if param.kind == "paths" else 1
            args += [note(param.key, draw_value(rng, command, param, valid)) for _ in range(count)]
        elif param.kind == "flag":
            drawn.append([param.off if param.off and rng.random() < 0.5 else rng.choice(param.names)])
            guards += GUARDED.get((command, param.key), [])
        else:
            for _ in range(rng.choice((1, 1, 2)) if param.kind == "strs" else 1):
                value = note(param.key, draw_value(rng, command, param, valid))
                drawn.append([rng.choice(param.names), value])
    rng.shuffle(drawn)
    argv = [*command.split(), *args, *(x for option in options + drawn for x in option)]
    # Guards last: an option's last value is the one that counts.
    return Case(index, command, argv + guards, reads, writes)


# The OS's words for a path that is not what a command expected: a message should say it in ours ("is a
# file, not a folder"), as it would for any user mistake.
OS_WORDS = ("[Errno", "File exists", "Not a directory", "Is a directory", "Interrupted system call")

# -- running a case and judging it -----------------------------------------------------------------------


class CaseTimeout(BaseException):
    """Raised in the case's thread when it runs past CASE_SECONDS (not an Exception: nothing catches it)."""


@dataclass
class Outcome:
    case: Case
    exit_code: int
    output: str
    seconds: float
    problems: list[str] = field(default_factory=list)


def run_case(case: Case, master: Path, work: Path) -> Outcome:
    """Run one case in its own folder (cwd too: "" and "." land there) and check what it left."""
    import torch

    folder = work / f"case{case.index:04d}"
    inputs, outputs = folder / "in", folder / "out"
    shutil.copytree(master, inputs)
    outputs.mkdir()
    before = hashes(inputs)
    argv = [
        a.replace("{in}", str(inputs)).replace("{out}", str(outputs)).replace("{shared}", str(master))
        for a in case.argv
    ]
    threads, environ, cwd = torch.get_num_threads(), dict(os.environ), os.getcwd()
    os.environ.pop("FACENHANCE_MODELS", None)
    os.chdir(folder)

    def too_long(signum, frame):
        raise CaseTimeout

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(CASE_SECONDS)
    started = time.perf_counter()
    try:
        code, stdout, stderr, crash = invoke_main(argv)
        problems = [f"raised {crash}"] if crash else []
    except CaseTimeout:
        code, stdout, stderr, problems = -1, "", "", [f"ran past {CASE_SECONDS} s"]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        seconds = time.perf_counter() - started
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
        torch.set_num_threads(threads)
    output = stdout + stderr
    outcome = Outcome(case, code, output, seconds, problems)
    if code not in (0, 1, 2) and not problems:
        outcome.problems.append(f"exit code {code}")
    for needle in ("Traceback", "internal error", *OS_WORDS):
        if needle in output:
            outcome.problems.append(f"{needle!r} in the output")
    lines = stderr.strip().splitlines()
    if code == 2 and not (len(lines) == 1 and lines[0].startswith("error: ") and not stdout.strip()):
        outcome.problems.append("a usage error (exit 2) that is not one `error:` line on stderr")
    after = hashes(inputs)

    def under(key: str, places: list[str]) -> bool:
        path = (inputs / key).resolve()
        for place in places:
            if "{in}" not in place:
                continue
            root = Path(place.replace("{in}", str(inputs)).replace("{out}", str(outputs))).resolve()
            if path == root or path.is_relative_to(root):
                return True
        return False

    changed = sorted(k for k in before if after.get(k) != before[k])
    lost = [k for k in changed if under(k, case.inputs) or not under(k, case.outputs)]
    if lost:
        outcome.problems.append(f"inputs changed or removed: {lost}")
    new = [folder / k for k in sorted(set(hashes(folder)) - {f"in/{k}" for k in before})]
    for path in new:
        if problem := incomplete(path):
            outcome.problems.append(f"{path.relative_to(folder)}: {problem}")
    if not outcome.problems:
        shutil.rmtree(folder, ignore_errors=True)
    return outcome


def invoke_main(argv: list[str]) -> tuple[int, str, str, str | None]:
    """The console script's `main` (one-line usage errors, SIGTERM handler) in this process, its streams
    captured: (exit code, stdout, stderr, traceback of an exception that escaped it or None)."""
    import sys
    import traceback

    from facenhance_cli.cli import main

    saved_argv, saved_term = sys.argv, signal.getsignal(signal.SIGTERM)
    crash = None
    with CliRunner().isolation() as (out, err, _both):
        sys.argv = ["facenhance", *argv]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        except Exception:  # noqa: BLE001 - what escapes main is the finding
            crash, code = traceback.format_exc(), 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.argv = saved_argv
            signal.signal(signal.SIGTERM, saved_term)
        stdout = out.getvalue().decode(errors="replace")
        stderr = err.getvalue().decode(errors="replace")
    return code, stdout, stderr, crash


def incomplete(path: Path) -> str | None:
    """Why a file a command left is not a complete output (None: it is)."""
    name, suffix = path.name, path.suffix.lower()
    if ".tmp" in name or name.startswith(".facenhance-probe-"):
        return "a temporary file left behind"
    if path.stat().st_size == 0:
        return "empty"
    try:
        if suffix in VIDEO_SUFFIXES:
            from facenhance_cli.video import read_video

            if len(read_video(path)[0]) < 1:
                return "a video without frames"
        elif suffix in IMAGE_SUFFIXES:
            from facenhance_cli.video import read_image

            read_image(path)
        elif suffix == ".pt":
            import torch

            torch.load(path, weights_only=True)
        elif suffix == ".json":
            json.loads(path.read_text())
        elif suffix == ".jsonl":
            for line in path.read_text().splitlines():
                if line.strip():
                    json.loads(line)
        elif suffix == ".csv":
            list(csv.reader(path.read_text().splitlines()))
        elif suffix == ".toml":
            import tomllib

            tomllib.loads(path.read_text())
    except Exception as exc:  # noqa: BLE001 - any failure to read it back is the finding
        return f"does not read back ({type(exc).__name__}: {str(exc)[:200]})"
    return None


def case_indices(count: int) -> Iterator[int]:
    """0..count-1, or the cases FACENHANCE_FUZZ_CASES names (to rerun a failure)."""
    chosen = os.environ.get(CASES_ENV, "").strip()
    if chosen:
        yield from (int(x) for x in chosen.split(",") if x.strip())
        return
    yield from range(count)


def fuzz(
    master: Path,
    work: Path,
    count: int,
    report: Callable[[str], None],
    seconds: float | None = None,
    skip: frozenset[str] = frozenset(),
) -> list[Outcome]:
    """Run cases 0, 1, ... count-1 (stopping once `seconds` have passed and MIN_CASES ran, when given;
    commands in `skip` are passed over); returns every outcome (the failures have problems)."""
    commands = command_table()
    outcomes = []
    started = time.perf_counter()
    for index in case_indices(count):
        if seconds is not None and len(outcomes) >= MIN_CASES and time.perf_counter() - started > seconds:
            break
        case = draw_case(index, commands)
        if case.command not in skip or os.environ.get(CASES_ENV):
            outcomes.append(run_case(case, master, work))
    codes = {c: sum(o.exit_code == c for o in outcomes) for c in (0, 1, 2)}
    per_command: dict[str, int] = {}
    for o in outcomes:
        per_command[o.case.command] = per_command.get(o.case.command, 0) + 1
    report(
        f"fuzz seed {SEED}: {len(outcomes)} cases in {time.perf_counter() - started:.1f} s, exit codes "
        f"{codes}, per command {per_command}, {sum(bool(o.problems) for o in outcomes)} failed"
    )
    return outcomes


def assert_no_failures(outcomes: list[Outcome]) -> None:
    failed = [o for o in outcomes if o.problems]
    if not failed:
        return
    lines = []
    for o in failed[:10]:
        lines.append(f"case {o.case.index} (seed {SEED}), exit {o.exit_code}: {o.case.line()}")
        lines += [f"    {p}" for p in o.problems]
        lines += [f"    | {line}" for line in o.output.strip().splitlines()[-6:]]
    indices = ",".join(str(o.case.index) for o in failed)
    lines.append(f'rerun: {CASES_ENV}={indices} python -m pytest tests/test_fuzz_cli.py -m ""')
    pytest.fail(f"{len(failed)} of {len(outcomes)} fuzz cases failed:\n" + "\n".join(lines))


def test_every_command_and_option_has_a_strategy():
    """A new option is fuzzed with its type's strategy; a hint naming an option that is gone is stale."""
    table = command_table()
    assert set(WEIGHTS) == set(table), "a command is missing from WEIGHTS (or WEIGHTS names a gone one)"
    keys = {(command, p.key) for command, params in table.items() for p in params}
    assert set(HINTS) <= keys, sorted(set(HINTS) - keys)
    assert set(GUARDED) <= keys
    for params in table.values():
        for p in params:
            assert p.kind in {"int", "float", "str", "path", "choice", "flag", "paths", "strs"}


def test_fuzz_the_cli_briefly(master, tmp_path):
    """The first seeded cases for DEFAULT_SECONDS (presets, a second of imports, left to the slow run):
    exit 0/1/2, no traceback, inputs intact, outputs whole."""
    outcomes = fuzz(master, tmp_path, SLOW_CASES, print, DEFAULT_SECONDS, frozenset({"presets"}))
    assert_no_failures(outcomes)


@pytest.mark.slow
def test_fuzz_the_cli_at_length(master, tmp_path):
    """SLOW_CASES seeded cases (the brief run's are the first of them)."""
    outcomes = fuzz(master, tmp_path, SLOW_CASES, print)
    assert_no_failures(outcomes)
