"""The subject-independent train/test split: drawn, read, written, kept across runs, and checked."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from facenhance_cli.errors import UsageError
from facenhance_cli.fileio import write_json
from facenhance_cli.prepare.manifest import read_manifest_rows
from facenhance_cli.prepare.options import MANIFEST, SPLIT_FILE, PrepareOptions


def make_split(subjects: Iterable[str], train_fraction: float = 0.75, seed: int = 0) -> dict[str, str]:
    """Subject-independent split: sorted subjects, a seeded permutation, the first round(f*n) are train.

    Deterministic for a given subject set, fraction and seed; with two or more subjects and 0 < f < 1
    both sides get at least one subject.
    """
    if not 0.0 <= train_fraction <= 1.0:
        raise UsageError(f"--split must be in [0, 1], got {train_fraction}")
    names = sorted(set(subjects))
    order = np.random.default_rng(seed).permutation(len(names))
    n_train = int(round(train_fraction * len(names)))
    if len(names) >= 2 and 0.0 < train_fraction < 1.0:
        n_train = min(max(n_train, 1), len(names) - 1)
    train = {names[i] for i in order[:n_train]}
    return {s: ("train" if s in train else "test") for s in names}


def write_split(
    path: str | os.PathLike[str], split: dict[str, str], train_fraction: float, seed: int
) -> None:
    """Write a split as JSON: {"train": [...], "test": [...], "train_fraction", "seed"}."""
    write_json(
        path,
        {
            "format": "facenhance-split-v1",
            "train_fraction": train_fraction,
            "seed": seed,
            "train": sorted(s for s, v in split.items() if v == "train"),
            "test": sorted(s for s, v in split.items() if v == "test"),
        },
    )


def read_split(path: str | os.PathLike[str]) -> dict[str, str]:
    """Subject -> "train"/"test" from a split JSON file, or a text file of `subject split` lines."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"split file not found: {path}")
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    split: dict[str, str] = {}
    if isinstance(data, dict) and ("train" in data or "test" in data):
        for name in ("train", "test"):
            for subject in data.get(name, []):
                split[str(subject)] = name
        return split
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = re.split(r"[\s,]+", line)
        if len(parts) != 2 or parts[1] not in {"train", "test"}:
            raise UsageError(f"{path}:{n}: expected `subject train|test` or a facenhance split JSON")
        split[parts[0]] = parts[1]
    return split


def assign_split(
    subjects: Iterable[str], train_fraction: float, seed: int, existing: dict[str, str] | None = None
) -> dict[str, str]:
    """Keep the assignments in `existing`; split the subjects it lacks among themselves with make_split."""
    existing = dict(existing or {})
    new = sorted(set(subjects) - set(existing))
    existing.update(make_split(new, train_fraction, seed) if new else {})
    return existing


def resolve_split(
    out_dir: Path, subjects: Iterable[str], options: PrepareOptions
) -> tuple[dict[str, str], list[str]]:
    """The split over the subjects that have at least one prepared clip (`subjects`).

    --split-file is taken as given. Otherwise OUT/split.json is kept for those subjects and new ones are
    split among themselves; a split.json whose train side holds none of them (drawn, by an older
    facenhance, before knowing which clips fail) cannot have trained anything, so it is drawn again.
    """
    warnings: list[str] = []
    subjects = set(subjects)
    if options.split_file:
        split = read_split(options.split_file)
        missing = sorted(subjects - set(split))
        if missing:
            warnings.append(
                f"{len(missing)} subject(s) not in {options.split_file} (split 'unassigned'): "
                + ", ".join(missing[:5])
            )
        return split, warnings
    existing_path = out_dir / SPLIT_FILE
    existing: dict[str, str] = {}
    if existing_path.is_file():
        try:
            existing = read_split(existing_path)
        except UsageError:
            existing = {}
    kept = {s: v for s, v in existing.items() if s in subjects}
    if kept and "train" not in kept.values() and len(subjects) >= 2 and options.split > 0:
        warnings.append(
            f"{SPLIT_FILE} put none of the {len(subjects)} prepared subjects in train: drawn again over them"
        )
        kept = {}
    split = assign_split(subjects, options.split, options.seed, kept)
    if subjects or existing_path.is_file():
        write_split(existing_path, split, options.split, options.seed)
    return split, warnings


def split_problems(split: dict[str, str], prepared: Iterable[str]) -> list[str]:
    """Why a split cannot train or cannot evaluate, and what to do, in one line each (empty when fine)."""
    prepared = sorted(set(prepared))
    if not prepared:
        return []
    train = [s for s in prepared if split.get(s) == "train"]
    test = [s for s in prepared if split.get(s) == "test"]
    out = []
    if not train:
        out.append(
            f"the train split is empty: none of the {len(prepared)} prepared subjects is in it, so `train` "
            "cannot run; prepare clips of more subjects, or give --split-file with train subjects"
        )
    elif not test:
        why = "only one subject was prepared" if len(prepared) == 1 else "every prepared subject is in train"
        out.append(
            f"the test split is empty ({why}): `train` runs without validation and `eval` has no held-out "
            "subject; prepare clips of more subjects, or give --split-file"
        )
    return out


def empty_train_message(data_dir: Path, usable: list[Any]) -> str:
    """`train`'s one line when no usable clip is in the train split: why, and what to do."""
    by_split: dict[str, set[str]] = {}
    for entry in usable:
        by_split.setdefault(str(entry.split), set()).add(str(entry.subject))
    failed = sum(row.get("status") != "ok" for row in read_manifest_rows(Path(data_dir) / MANIFEST).values())
    where = ", ".join(f"{len(v)} subject(s) in {k}" for k, v in sorted(by_split.items())) or "none"
    failed_text = f"; {failed} clip(s) failed in prepare" if failed else ""
    return (
        f"no clips in the train split of {data_dir} ({len(usable)} usable clips: {where}{failed_text}): "
        f"rerun `facenhance prepare ... -o {data_dir}` to split over the prepared clips, "
        "or pass --split-file with train subjects"
    )
