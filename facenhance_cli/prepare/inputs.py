"""Which clips `prepare` is given: files, frame folders, folders searched recursively or a MUG root; the
frames of a clip it selects (segment, even resampling)."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from facenhance_cli.errors import InputError, UsageError

SEGMENTS_HELP = "first-half | all | START:END (frame indices, END exclusive, either may be empty)"
Layout = Literal["auto", "mug", "flat"]
LAYOUTS: tuple[str, ...] = get_args(Layout)
MUG_EXPRESSIONS = {"anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"}
# Expression words found in file names -> one label per expression (MUG's spelling, plus contempt).
EXPRESSION_WORDS = {
    "anger": "anger", "angry": "anger", "furious": "anger",
    "contempt": "contempt",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear",
    "happiness": "happiness", "happy": "happiness", "joy": "happiness",
    "neutral": "neutral",
    "sadness": "sadness", "sad": "sadness",
    "surprise": "surprise", "surprised": "surprise",
}  # fmt: skip
MUG_FPS = 19.0  # MUG frame folders carry no rate; the database was recorded at 19 fps
SUBJECT_COLUMNS = ("subject", "subject_id", "person_id", "speaker", "id", "person")


@dataclass(frozen=True)
class ClipSource:
    """One clip to prepare: a video file or a frame folder, with what is known about it."""

    path: Path
    clip_id: str
    subject: str
    expression: str | None = None
    take: str | None = None
    fps: float | None = None  # for frame folders with a known rate (MUG: 19 fps); None: from the file


def parse_segment(segment: str, n_total: int) -> tuple[int, int]:
    """[start, end) frame range of `segment` in a clip of n_total frames (first-half keeps ceil(n/2))."""
    if n_total <= 0:
        raise InputError("the clip has no frames")
    if segment == "all":
        return 0, n_total
    if segment == "first-half":
        return 0, max(1, (n_total + 1) // 2)
    match = re.fullmatch(r"\s*(-?\d*)\s*:\s*(-?\d*)\s*", segment)
    if not match:
        raise UsageError(f"bad --segment {segment!r}: use {SEGMENTS_HELP}")
    start = int(match.group(1)) if match.group(1) else 0
    end = int(match.group(2)) if match.group(2) else n_total
    start = start + n_total if start < 0 else start
    end = end + n_total if end < 0 else end
    start, end = max(0, start), min(n_total, end)
    if end <= start:
        raise InputError(f"segment {segment} is empty in a clip of {n_total} frames")
    return start, end


def resample_indices(start: int, end: int, n: int) -> list[int]:
    """n frame indices spread evenly over [start, end) (repeats when the segment is shorter than n)."""
    if n <= 0:
        raise UsageError("--frames must be at least 1")
    return [int(i) for i in np.round(np.linspace(start, end - 1, n)).astype(int)]


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "clip"


def expression_from_name(name: str) -> str | None:
    """An expression label from words in a file name (angry -> anger, happy -> happiness, ...), or None."""
    for token in re.split(r"[^a-z]+", name.lower()):
        if token in EXPRESSION_WORDS:
            return EXPRESSION_WORDS[token]
    return None


def _subject_table(folder: Path, cache: dict[Path, dict[str, str]]) -> dict[str, str]:
    """basename -> subject from a manifest.csv in `folder` or its parent (first subject-like column)."""
    if folder in cache:
        return cache[folder]
    table: dict[str, str] = {}
    for candidate in (folder / "manifest.csv", folder.parent / "manifest.csv"):
        if not candidate.is_file():
            continue
        try:
            with open(candidate, newline="") as f:
                reader = csv.DictReader(f)
                cols = reader.fieldnames or []
                file_col = next((c for c in ("file", "path", "filename", "clip") if c in cols), None)
                subject_col = next((c for c in SUBJECT_COLUMNS if c in cols), None)
                if file_col and subject_col:
                    for row in reader:
                        if row.get(file_col) and row.get(subject_col):
                            table.setdefault(Path(row[file_col]).name, row[subject_col].strip())
        except (OSError, csv.Error, UnicodeDecodeError):
            continue
        if table:
            break
    cache[folder] = table
    return table


def subject_from_name(name: str, regex: str | None = None) -> str:
    """Subject id from a clip name: --subject-regex (group 'subject', else group 1, else the match), else
    the prefix before the first '_' (b01_dreamtalk-mead_... -> b01; M030_front_... -> M030)."""
    if regex:
        match = re.search(regex, name)
        if match:
            if "subject" in match.groupdict():
                return match.group("subject")
            return match.group(1) if match.groups() else match.group(0)
    return name.split("_", 1)[0] or name


def discover_inputs(
    inputs: Iterable[str | os.PathLike[str]], layout: str = "auto", subject_regex: str | None = None
) -> tuple[list[ClipSource], list[str]]:
    """Clips from files, frame folders, folders searched recursively or a MUG root; one-line input errors.

    MUG: <root>/<subject>/[<session>/]<expression>/<take>/img_*.jpg gives subject and expression; `auto`
    recognises it by MUG's expression folder names. Flat: subject from --subject-regex, else a
    manifest.csv beside the files (or one level up) with a subject-like column, else a sub-folder of the
    given root, else the file-name prefix.
    """
    if layout not in LAYOUTS:
        raise UsageError(f"unknown --layout {layout!r}: use {', '.join(LAYOUTS)}")
    if subject_regex:
        try:
            re.compile(subject_regex)
        except re.error as exc:
            raise UsageError(f"bad --subject-regex: {exc}") from None
    found, errors = _find_clips(inputs)
    clips: list[ClipSource] = []
    used: set[str] = set()
    tables: dict[Path, dict[str, str]] = {}
    seen_paths: set[Path] = set()
    for clip_path, root in found:
        resolved = clip_path.resolve()
        if resolved in seen_paths:
            continue
        seen_paths.add(resolved)
        named = _name_clip(clip_path, root, layout, subject_regex, tables)
        if isinstance(named, str):
            errors.append(named)
            continue
        subject, expression, take, base = named
        clip_id = _sanitize(base)
        k = 2
        while clip_id in used:
            clip_id = f"{_sanitize(base)}-{k}"
            k += 1
        used.add(clip_id)
        fps = MUG_FPS if take is not None else None
        clips.append(ClipSource(clip_path, clip_id, _sanitize(subject), expression, take, fps))
    return clips, errors


def _find_clips(inputs: Iterable[str | os.PathLike[str]]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(clip path, the root it was found under) for every video file and frame folder; input errors."""
    from facenhance_cli.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, is_frame_folder

    found: list[tuple[Path, Path]] = []
    errors: list[str] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            errors.append(f"{path}: not found")
        elif path.is_file():
            if path.suffix.lower() in IMAGE_SUFFIXES:
                errors.append(f"{path}: an image, not a video (use --identity-only to align a photo)")
            else:
                found.append((path, path.parent))
        elif not path.is_dir():
            errors.append(f"{path}: not a regular file (a FIFO or a device): give a video file or a folder")
        elif is_frame_folder(path):
            found.append((path, path.parent))
        else:
            before = len(found)
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                here = Path(folder)
                if any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in files):
                    found.append((here, path))
                    dirs[:] = []  # a frame folder is one clip
                    continue
                for name in sorted(files):
                    if Path(name).suffix.lower() in VIDEO_SUFFIXES:
                        found.append((here / name, path))
            if len(found) == before:
                errors.append(f"{path}: no videos or frame folders inside")
    return found, errors


def _name_clip(
    clip_path: Path, root: Path, layout: str, subject_regex: str | None, tables: dict[Path, dict[str, str]]
) -> tuple[str, str | None, str | None, str] | str:
    """(subject, expression, take, base name) of a clip, or the one-line reason it does not fit --layout."""
    rel = clip_path.relative_to(root).parts if clip_path != root else (clip_path.name,)
    is_mug = clip_path.is_dir() and len(rel) >= 3 and rel[-2].lower() in MUG_EXPRESSIONS
    if layout == "mug" or (layout == "auto" and is_mug):
        if not clip_path.is_dir() or len(rel) < 3:
            return f"{clip_path}: not <subject>/<expression>/<take>/ frames as --layout mug expects"
        return rel[0], rel[-2].lower(), rel[-1], "_".join(rel)
    stem = clip_path.stem if clip_path.is_file() else clip_path.name
    table = _subject_table(clip_path.parent, tables) if not subject_regex else {}
    if subject_regex:
        subject = subject_from_name(stem, subject_regex)
    elif clip_path.name in table:
        subject = table[clip_path.name]
    elif len(rel) >= 2:
        subject = rel[0]
    else:
        subject = subject_from_name(stem)
    return subject, expression_from_name(stem), None, stem
