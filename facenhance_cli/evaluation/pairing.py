"""Pair generated and ground-truth videos (and identity images, low videos) by name, or from a CSV."""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from facenhance_cli.errors import InputError
from facenhance_cli.video import VIDEO_SUFFIXES, is_frame_folder

CLIP_FOLDER_FILES = {"gen": "high.mkv", "gt": "high.mkv", "low": "low.mkv"}
IDENTITY_FILE = "identity.png"


@dataclass(frozen=True)
class EvalPair:
    """One clip to score: generated video, ground truth, and optionally its identity image and low video."""

    name: str
    gen: Path
    gt: Path
    identity: Path | None = None
    low: Path | None = None


def _is_clip_folder(path: Path) -> bool:
    return path.is_dir() and (path / "high.mkv").is_file()


def _expand_globs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        text = str(p)
        if not Path(text).exists() and any(c in text for c in "*?["):
            matches = sorted(glob.glob(text))
            if not matches:
                raise InputError(f"no files match {text}")
            out.extend(Path(m) for m in matches)
        else:
            out.append(Path(text))
    return out


def expand_videos(paths: Iterable[str | os.PathLike[str]], role: str = "gen") -> dict[str, Path]:
    """Name -> video for files, frame folders, `prepare` clip folders and folders of those (one level).

    Names are file stems, or folder names for frame and clip folders; `role` ('gen', 'gt', 'low')
    picks which file of a clip folder is meant (high.mkv, or low.mkv for 'low'). Globs are expanded.
    """
    found: dict[str, Path] = {}

    def add(name: str, path: Path) -> None:
        if name in found and found[name] != path:
            raise InputError(f"two {role} videos are named '{name}': {found[name]} and {path}")
        found[name] = path

    for path in _expand_globs(paths):
        if not path.exists():
            raise InputError(f"{role} input not found: {path}")
        if path.is_file():
            add(path.stem, path)
        elif not path.is_dir():
            raise InputError(f"{role} input {path} is not a regular file (a FIFO or a device): give a video")
        elif _is_clip_folder(path):
            add(path.name, path / CLIP_FOLDER_FILES[role])
        elif is_frame_folder(path):
            add(path.name, path)
        else:
            before = len(found)
            for child in sorted(path.iterdir()):
                if child.name.startswith("."):
                    continue
                if child.is_file() and child.suffix.lower() in VIDEO_SUFFIXES:
                    add(child.stem, child)
                elif _is_clip_folder(child):
                    add(child.name, child / CLIP_FOLDER_FILES[role])
                elif is_frame_folder(child):
                    add(child.name, child)
                elif child.is_dir():
                    videos = [
                        c for c in child.iterdir() if c.is_file() and c.suffix.lower() in VIDEO_SUFFIXES
                    ]
                    if len(videos) == 1:  # e.g. out/<clip>/output.mp4
                        add(child.name, videos[0])
            if len(found) == before:
                raise InputError(f"no videos, frame folders or prepare clip folders in {path}")
    return found


def _clip_sibling(video: Path, filename: str) -> Path | None:
    """identity.png / low.mkv beside a prepare clip's high.mkv, if there is one."""
    if video.name == "high.mkv" and (video.parent / filename).is_file():
        return video.parent / filename
    return None


def _strip_identity_suffix(stem: str) -> str:
    for suffix in ("_neutral", "_identity", "-neutral", "-identity"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _identity_for(name: str, identity: Path) -> Path | None:
    """Identity image of clip `name` in a folder: NAME/identity.png, NAME.*, or longest PREFIX[_neutral].*"""
    from facenhance_cli.video import IMAGE_SUFFIXES

    if (identity / name / IDENTITY_FILE).is_file():
        return identity / name / IDENTITY_FILE
    images = [p for p in sorted(identity.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    for p in images:
        if p.stem == name:
            return p
    # Subject-level identities (e.g. shared/data/faces/neutral/b01_neutral.png for clip b01_...).
    best: Path | None = None
    for p in images:
        prefix = _strip_identity_suffix(p.stem)
        if prefix and name.startswith(prefix) and name[len(prefix) : len(prefix) + 1] in ("_", "-", ""):
            if best is None or len(prefix) > len(_strip_identity_suffix(best.stem)):
                best = p
    return best


def find_pairs(
    gen: Iterable[str | os.PathLike[str]],
    gt: Iterable[str | os.PathLike[str]],
    identity: str | os.PathLike[str] | None = None,
    low: Iterable[str | os.PathLike[str]] | None = None,
) -> tuple[list[EvalPair], list[str]]:
    """Pair generated and ground-truth videos by name; identity and low by name too (or from clip folders).

    One generated and one ground-truth video pair whatever their names. Ground-truth videos with no
    generated counterpart are left out with a warning (evaluating a test split against a whole dataset);
    returns the pairs and the warnings.
    """
    gen_map, gt_map = expand_videos(gen, "gen"), expand_videos(gt, "gt")
    warnings: list[str] = []
    if len(gen_map) == 1 and len(gt_map) == 1:
        (name, gen_path), gt_path = next(iter(gen_map.items())), next(iter(gt_map.values()))
        matched = [(name, gen_path, gt_path)]
    else:
        missing = [n for n in gen_map if n not in gt_map]
        if missing:
            shown = ", ".join(f"'{n}'" for n in missing[:3]) + (
                f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            )
            raise InputError(
                f"no ground truth named like generated {shown} among {len(gt_map)} ground-truth videos "
                "(names are file stems or clip folder names; pass --gt once per file, a folder, "
                "a quoted glob, or use --pairs FILE.csv)"
            )
        matched = [(n, gen_map[n], gt_map[n]) for n in gen_map]
        extra = len(gt_map) - len(gen_map)
        if extra:
            warnings.append(f"{extra} ground-truth videos have no generated counterpart and are not scored")

    low_map = expand_videos(low, "low") if low else {}
    identity_path = Path(identity) if identity else None
    if identity_path is not None and not identity_path.exists():
        raise InputError(f"identity image not found: {identity_path}")
    pairs = []
    for name, gen_path, gt_path in matched:
        if identity_path is None:
            id_path = _clip_sibling(gt_path, IDENTITY_FILE)
        elif identity_path.is_dir():
            id_path = _identity_for(name, identity_path)
            if id_path is None:
                raise InputError(f"no identity image for '{name}' in {identity_path}")
        else:
            id_path = identity_path
        if low_map:
            if len(low_map) == 1 and len(matched) == 1:
                low_path: Path | None = next(iter(low_map.values()))
            elif name in low_map:
                low_path = low_map[name]
            else:
                raise InputError(f"no low video named '{name}' among {len(low_map)} --low inputs")
        else:
            low_path = _clip_sibling(gt_path, "low.mkv")
        pairs.append(EvalPair(name, gen_path, gt_path, id_path, low_path))
    return pairs, warnings


def read_pairs_csv(path: str | os.PathLike[str]) -> list[EvalPair]:
    """Pairs from a CSV with columns gen, gt, optionally identity, low, name (paths relative to the CSV)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"pairs file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as f:  # a spreadsheet's "CSV UTF-8" has a BOM
        rows = list(csv.DictReader(f))
    if not rows or not {"gen", "gt"} <= set(rows[0]):
        raise InputError(f"{path}: needs a header with columns gen, gt (optional: identity, low, name)")

    def resolve(value: str | None, role: str, line: int) -> Path | None:
        if not value or not value.strip():
            return None
        p = Path(value.strip())
        p = p if p.is_absolute() else path.parent / p
        if not p.exists():
            raise InputError(f"{path}:{line}: {role} not found: {p}")
        if role in CLIP_FOLDER_FILES and _is_clip_folder(p):
            return p / CLIP_FOLDER_FILES[role]
        if role == "identity" and p.is_dir() and (p / IDENTITY_FILE).is_file():
            return p / IDENTITY_FILE
        return p

    pairs: list[EvalPair] = []
    names: set[str] = set()
    for line, row in enumerate(rows, start=2):
        gen, gt = resolve(row.get("gen"), "gen", line), resolve(row.get("gt"), "gt", line)
        if gen is None or gt is None:
            raise InputError(f"{path}:{line}: gen and gt are both required")
        name = (row.get("name") or "").strip() or (
            gen.parent.name if gen.stem in ("high", "low") else gen.stem
        )
        base, k = name, 2
        while name in names:
            name, k = f"{base}#{k}", k + 1
        names.add(name)
        identity = resolve(row.get("identity"), "identity", line) or _clip_sibling(gt, IDENTITY_FILE)
        low = resolve(row.get("low"), "low", line) or _clip_sibling(gt, "low.mkv")
        pairs.append(EvalPair(name, gen, gt, identity, low))
    return pairs


def check_pairs(pairs: list[EvalPair]) -> None:
    """Cheap up-front check (container headers only) that each pair's sizes and known frame counts agree."""
    from facenhance_cli.video import probe_video

    for pair in pairs:
        gen, gt = probe_video(pair.gen), probe_video(pair.gt)
        if (gen.width, gen.height) != (gt.width, gt.height):
            raise InputError(
                f"pair '{pair.name}': generated video is {gen.width}x{gen.height} but ground truth is "
                f"{gt.width}x{gt.height} ({pair.gen} vs {pair.gt})"
            )
        if gen.n_frames and gt.n_frames and gen.n_frames != gt.n_frames:
            raise InputError(
                f"pair '{pair.name}': generated video has {gen.n_frames} frames but ground truth has "
                f"{gt.n_frames} ({pair.gen} vs {pair.gt})"
            )
