"""`facenhance prepare`: raw face videos -> per-clip high (192x192) / low (64x64 face on black) data.

For each clip: select the segment, resample evenly to N frames, detect and track one face, fill and
smooth its landmarks along time, cut one steady square crop for the high frames and align the low
frames OpenFace-style (facenhance_cli.faces). Per clip, everything is written into a hidden temporary
folder with meta.json last, then the folder is renamed to OUT/<clip_id>: a folder with meta.json is
complete, anything else is retried. OUT/manifest.jsonl lists every clip (split, status, reason) and
OUT/split.json the subject-independent split.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from facenhance_cli.errors import FacenhanceError, InputError, NoFaceError, UsageError, first_line
from facenhance_cli.fileio import write_json, write_text

SEGMENTS_HELP = "first-half | all | START:END (frame indices, END exclusive, either may be empty)"
LAYOUTS = ("auto", "mug", "flat")
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
MANIFEST = "manifest.jsonl"
SPLIT_FILE = "split.json"
META = "meta.json"
TMP_PREFIX = ".tmp-"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PrepareOptions:
    """Every setting of `prepare` (defaults = the paper's MUG setting where it gives one)."""

    frames: int = 32  # N frames per clip, resampled evenly from the segment
    segment: str = "first-half"  # neutral -> apex half of MUG-like clips (paper Sec. 5.1)
    size: int = 192  # high frames
    low_size: int = 64  # low frames (aligned face on black)
    layout: str = "auto"
    split: float = 0.75  # train fraction of subjects
    seed: int = 0
    split_file: str | None = None
    workers: int = 1
    landmarks: str = "auto"
    detector: str = "auto"
    device: str = "cpu"
    weights_dir: str | None = None
    subject_regex: str | None = None
    crop_scale: float = 1.8  # high crop side / face size (landmark extent)
    smooth: float = 1.0  # Gaussian sigma along time, in output frames
    max_missing: float = 0.5  # skip a clip when more than this fraction of frames has no face
    min_face: float = 40.0  # skip a clip whose face (landmark extent) is smaller, in source pixels
    preview: bool = True
    overwrite: bool = False

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change a clip's files (a finished clip made with others is reported)."""
        keys = ("frames", "segment", "size", "low_size", "crop_scale", "smooth")
        return {k: getattr(self, k) for k in keys}


@dataclass(frozen=True)
class ClipSource:
    """One clip to prepare: a video file or a frame folder, with what is known about it."""

    path: Path
    clip_id: str
    subject: str
    expression: str | None = None
    take: str | None = None
    fps: float | None = None  # for frame folders with a known rate (MUG: 19 fps); None: from the file


@dataclass
class ClipResult:
    """What happened to one clip: status "ok" (prepared now or earlier) or "failed" with a one-line reason."""

    clip_id: str
    source: str
    subject: str
    expression: str | None
    status: str
    reason: str | None = None
    n_frames: int = 0
    done_earlier: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class PrepareReport:
    """Outcome of a `prepare` run."""

    results: list[ClipResult]
    input_errors: list[str]
    out_dir: Path
    split_problems: list[str] = field(default_factory=list)  # an empty train or test split: why, what to do

    @property
    def n_ok(self) -> int:
        """Clips with complete outputs (prepared now or earlier)."""
        return sum(r.status == "ok" for r in self.results)


# ----------------------------------------------------------------------------------------------------------
# Frames: segment and resampling


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


# ----------------------------------------------------------------------------------------------------------
# Inputs


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
    from facenhance_cli.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, is_frame_folder

    if layout not in LAYOUTS:
        raise UsageError(f"unknown --layout {layout!r}: use {', '.join(LAYOUTS)}")
    if subject_regex:
        try:
            re.compile(subject_regex)
        except re.error as exc:
            raise UsageError(f"bad --subject-regex: {exc}") from None
    found: list[tuple[Path, Path]] = []  # (clip path, the root it was found under)
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

    clips: list[ClipSource] = []
    used: set[str] = set()
    tables: dict[Path, dict[str, str]] = {}
    seen_paths: set[Path] = set()
    expression: str | None
    for clip_path, root in found:
        resolved = clip_path.resolve()
        if resolved in seen_paths:
            continue
        seen_paths.add(resolved)
        rel = clip_path.relative_to(root).parts if clip_path != root else (clip_path.name,)
        is_mug = clip_path.is_dir() and len(rel) >= 3 and rel[-2].lower() in MUG_EXPRESSIONS
        if layout == "mug" or (layout == "auto" and is_mug):
            if not clip_path.is_dir() or len(rel) < 3:
                errors.append(
                    f"{clip_path}: not <subject>/<expression>/<take>/ frames as --layout mug expects"
                )
                continue
            subject, expression, take = rel[0], rel[-2].lower(), rel[-1]
            base = "_".join(rel)
        else:
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
            expression, take = expression_from_name(stem), None
            base = stem
        clip_id = _sanitize(base)
        k = 2
        while clip_id in used:
            clip_id = f"{_sanitize(base)}-{k}"
            k += 1
        used.add(clip_id)
        fps = MUG_FPS if take is not None else None
        clips.append(ClipSource(clip_path, clip_id, _sanitize(subject), expression, take, fps))
    return clips, errors


# ----------------------------------------------------------------------------------------------------------
# Split


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


# ----------------------------------------------------------------------------------------------------------
# One clip


def _round(array: np.ndarray, digits: int = 2) -> list:
    return np.round(np.asarray(array, np.float64), digits).tolist()


def _versions() -> dict[str, str]:
    import cv2

    from facenhance_cli import __version__

    out = {"facenhance": __version__, "numpy": np.__version__, "opencv": cv2.__version__}
    try:
        import av

        out["av"] = av.__version__
    except ImportError:
        pass
    return out


def is_complete(clip_dir: Path) -> bool:
    """A clip folder is complete when its meta.json (written last) is there."""
    return (clip_dir / META).is_file()


def _load_frames(source: ClipSource, options: PrepareOptions) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The N selected frames and where they came from (segment, indices, fps)."""
    from facenhance_cli.video import count_frames, probe_video, read_frames_at

    info = probe_video(source.path)
    n_total = info.n_frames or count_frames(source.path)
    if n_total <= 0:
        raise InputError("the clip has no frames")
    start, end = parse_segment(options.segment, n_total)
    indices = resample_indices(start, end, options.frames)
    frames, n_decoded = read_frames_at(source.path, indices)
    if len(frames) < len(set(indices)):
        # The container promised more frames than decode gave (truncated or miscounted): re-select
        # over what is really there.
        n_total = n_decoded
        if n_total <= 0:
            raise InputError("the clip has no decodable frames")
        start, end = parse_segment(options.segment, n_total)
        indices = resample_indices(start, end, options.frames)
        frames, _ = read_frames_at(source.path, indices)
        if len(frames) < len(set(indices)):
            raise InputError("frames could not be decoded")
    shapes = {f.shape for f in frames.values()}
    if len(shapes) > 1:
        raise InputError(f"frames of different sizes: {sorted(shapes)}")
    selected = [frames[i] for i in indices]
    fps = Fraction(source.fps) if source.fps else Fraction(info.fps) if info.fps else Fraction(25)
    # Output rate keeps the segment's duration: N frames span (end - start) source frames.
    fps_out = fps * len(indices) / (end - start)
    where = {
        "n_source_frames": n_total,
        "segment": [start, end],
        "frame_indices": indices,
        "fps": float(fps),
        "fps_out": float(fps_out),
        "width": int(selected[0].shape[1]),
        "height": int(selected[0].shape[0]),
    }
    return selected, where


def process_clip(
    source: ClipSource,
    out_dir: Path,
    options: PrepareOptions,
    detector=None,
    on_frame: Callable[[int], None] | None = None,
) -> ClipResult:
    """Prepare one clip into out_dir/<clip_id>/ atomically; errors become a failed ClipResult, never raise.

    KeyboardInterrupt still propagates (after the temporary folder is removed).
    """
    from facenhance_cli import faces

    t0 = time.perf_counter()
    result = ClipResult(source.clip_id, str(source.path), source.subject, source.expression, "failed")
    final = out_dir / source.clip_id
    if is_complete(final) and not options.overwrite:
        result.status, result.done_earlier = "ok", True
        try:
            meta = json.loads((final / META).read_text())
            result.n_frames = int(meta.get("n_frames", 0))
            if meta.get("settings") and meta["settings"] != options.fingerprint():
                result.notes.append("prepared earlier with other settings (use --overwrite to redo)")
        except (OSError, ValueError):
            pass
        return result
    tmp = out_dir / f"{TMP_PREFIX}{source.clip_id}-{uuid.uuid4().hex[:8]}"
    try:
        det = detector or faces.default_detector(
            options.landmarks, options.detector, options.weights_dir, options.device
        )
        template = faces.alignment_template(options.weights_dir)
        frames, where = _load_frames(source, options)
        n = len(frames)

        track = faces.track_landmarks(frames, det, options.smooth, on_frame)
        landmarks, found, raw = track.landmarks, track.found, track.raw
        n_faces_max, n_missing, n_recovered = track.faces_max, track.n_missing, track.n_recovered
        if n_missing > options.max_missing * n:
            raise NoFaceError(
                f"no face in {n_missing}/{n} frames (more than --max-missing {options.max_missing})"
            )
        face_px = float(np.median([faces.landmark_extent(lm) for lm in landmarks]))
        if face_px < options.min_face:
            raise InputError(f"face too small ({face_px:.0f} px < --min-face {options.min_face:.0f})")
        if n_faces_max > 1:
            result.notes.append(f"{n_faces_max} faces in a frame: kept the most consistent one")
        if n_missing:
            result.notes.append(
                f"no face detected in {n_missing}/{n} frames: {n_recovered} fitted around the neighbours' "
                f"landmarks, {n_missing - n_recovered} interpolated"
            )

        box = faces.steady_crop_box(landmarks, frames[0].shape[:2], options.crop_scale)
        high = np.stack([faces.crop_resize(f, box, options.size) for f in frames])
        aligned = [
            faces.align_face(f, lm, template, options.low_size)
            for f, lm in zip(frames, landmarks, strict=True)
        ]
        low = np.stack([a.image for a in aligned])
        h, w = frames[0].shape[:2]
        if box.x < 0 or box.y < 0 or box.x + box.side > w or box.y + box.side > h:
            result.notes.append("crop reaches outside the frame: edges replicated")

        tmp.mkdir(parents=True)
        _write_clip(tmp, high, low, Fraction(where["fps_out"]).limit_denominator(100000), options.preview)
        meta = {
            "format": FORMAT_VERSION,
            "clip_id": source.clip_id,
            "source": str(source.path.resolve()),
            "subject": source.subject,
            "expression": source.expression,
            "take": source.take,
            "n_frames": n,
            **where,
            "size": options.size,
            "low_size": options.low_size,
            "settings": options.fingerprint(),
            "detector": det.detector_name,
            "landmark_backend": det.backend,
            "template": template.source,
            "faces_max_per_frame": n_faces_max,
            "face_found": found.tolist(),  # detected (False: fitted near neighbours or interpolated)
            "face_size_px": round(face_px, 1),
            "crop_box": box.as_list(),
            "landmarks_source": _round(landmarks),
            "landmarks_source_raw": [None if not ok else _round(r) for ok, r in zip(found, raw, strict=True)],
            "landmarks_high": _round(faces.box_to_crop(landmarks, box, options.size)),
            "landmarks_low": _round(np.stack([a.landmarks for a in aligned])),
            "low_transforms": [_round(a.matrix, 5) for a in aligned],
            "notes": result.notes,
            "versions": {**_versions(), **det.versions()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        # Last: its presence marks the clip complete. One key per line, arrays inline (readable, small).
        body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in meta.items())
        write_text(tmp / META, "{\n" + body + "\n}\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        result.status, result.n_frames = "ok", n
    except FacenhanceError as exc:
        result.reason = first_line(exc, type(exc).__name__)
    except MemoryError:
        result.reason = "out of memory"
    except OSError as exc:
        if exc.errno == 28:
            result.reason = "disk full"
        else:
            result.reason = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
    except Exception as exc:  # a bad clip never stops the batch
        if os.environ.get("FACENHANCE_DEBUG"):
            raise
        first = first_line(exc)
        result.reason = f"internal error ({type(exc).__name__}: {first})"
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        result.seconds = time.perf_counter() - t0
    return result


def _write_clip(folder: Path, high: np.ndarray, low: np.ndarray, fps: Fraction, preview: bool) -> None:
    """high.mkv, low.mkv (FFV1, lossless), identity.png (first high frame), preview.mp4 (low | high)."""
    import cv2

    from facenhance_cli.video import write_image, write_video

    write_video(folder / "high.mkv", high, fps, lossless=True)
    write_video(folder / "low.mkv", low, fps, lossless=True)
    write_image(folder / "identity.png", high[0])
    if preview:
        size = high.shape[1]
        up = [cv2.resize(f, (size, size), interpolation=cv2.INTER_NEAREST) for f in low]
        write_video(folder / "preview.mp4", np.concatenate([np.stack(up), high], axis=2), fps)


# ----------------------------------------------------------------------------------------------------------
# The batch


def _worker_init() -> None:
    # One clip per process: keep libraries from each spawning a thread per core. torch (BlazeFace) reads
    # OMP_NUM_THREADS when first imported, so it is not imported here (that alone costs seconds).
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(1)


def _worker(args: tuple[ClipSource, Path, PrepareOptions]) -> ClipResult:
    source, out_dir, options = args
    return process_clip(source, out_dir, options)


def _clean_stale(out_dir: Path) -> None:
    """Remove temporary clip folders left by a killed run (Ctrl-C cleans up its own)."""
    for path in out_dir.glob(f"{TMP_PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                rows[row["clip_id"]] = row
            except (ValueError, KeyError, TypeError):
                continue
    return rows


def write_manifest(out_dir: Path, results: list[ClipResult], split: dict[str, str]) -> None:
    """OUT/manifest.jsonl: earlier rows kept, this run's clips updated; one JSON object per line."""
    path = out_dir / MANIFEST
    rows = _read_manifest(path)
    for r in results:
        rows[r.clip_id] = {
            "clip_id": r.clip_id,
            "subject": r.subject,
            "expression": r.expression,
            "split": None,
            "n_frames": r.n_frames,
            "status": r.status,
            "reason": r.reason,
            "source": r.source,
            "notes": r.notes,
        }
    for row in rows.values():
        row["split"] = split.get(row["subject"], "unassigned")
    lines = [json.dumps(rows[k]) for k in sorted(rows)]
    write_text(path, "\n".join(lines) + ("\n" if lines else ""))


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
    failed = sum(row.get("status") != "ok" for row in _read_manifest(Path(data_dir) / MANIFEST).values())
    where = ", ".join(f"{len(v)} subject(s) in {k}" for k, v in sorted(by_split.items())) or "none"
    failed_text = f"; {failed} clip(s) failed in prepare" if failed else ""
    return (
        f"no clips in the train split of {data_dir} ({len(usable)} usable clips: {where}{failed_text}): "
        f"rerun `facenhance prepare ... -o {data_dir}` to split over the prepared clips, "
        "or pass --split-file with train subjects"
    )


def run_prepare(
    inputs: list[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    options: PrepareOptions,
    on_clip: Callable[[ClipResult], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
    on_start: Callable[[list[ClipSource]], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> PrepareReport:
    """Prepare every clip found in `inputs` into out_dir; manifest and split are written even on Ctrl-C."""
    if options.frames < 1:
        raise UsageError("--frames must be at least 1")
    if options.size < 8 or options.low_size < 8:
        raise UsageError("--size and --low-size must be at least 8")
    if options.workers < 1:
        raise UsageError("--workers must be at least 1")
    parse_segment(options.segment, 10**6)  # reject a malformed --segment before any work
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {out} exists and is not a folder")
    check_output_folder(out, inputs)
    sources, input_errors = discover_inputs(inputs, options.layout, options.subject_regex)
    check_sources_outside_clips(out, sources)
    say = log or (lambda message: None)
    for message in input_errors:
        say(f"skipped {message}")
    if not sources:
        raise InputError("no clips to prepare: " + ("; ".join(input_errors) if input_errors else "no inputs"))
    out.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    if options.split_file:
        read_split(options.split_file)  # a malformed --split-file fails before any work
    if on_start:
        on_start(sources)

    results: list[ClipResult] = []
    split: dict[str, str] = {}
    split_warnings: list[str] = []
    try:
        if options.workers == 1:
            from facenhance_cli import faces

            detector = faces.default_detector(
                options.landmarks, options.detector, options.weights_dir, options.device
            )
            for source in sources:
                result = process_clip(source, out, options, detector, on_frame)
                results.append(result)
                if on_clip:
                    on_clip(result)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed
            from concurrent.futures.process import BrokenProcessPool

            from facenhance_cli import faces

            # Fail fast on missing weights or bad options before starting the workers.
            faces.default_detector(options.landmarks, options.detector, options.weights_dir, options.device)
            context = multiprocessing.get_context("spawn")  # fork after torch/av threads start can hang
            with ProcessPoolExecutor(options.workers, mp_context=context, initializer=_worker_init) as pool:
                futures = {pool.submit(_worker, (s, out, options)): s for s in sources}
                try:
                    for future in as_completed(futures):
                        try:
                            result = future.result()
                        except BrokenProcessPool:
                            # A worker died (segfault, out-of-memory kill): that clip fails, the batch goes on.
                            src = futures[future]
                            result = ClipResult(
                                src.clip_id, str(src.path), src.subject, src.expression, "failed"
                            )
                            result.reason = "the worker process died (out of memory?)"
                        results.append(result)
                        if on_clip:
                            on_clip(result)
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        # The split is drawn over what was prepared (this run and earlier ones), never over clips that
        # failed: a subject whose every clip failed would otherwise take a train (or test) place.
        prepared = _prepared_subjects(out, results)
        split, split_warnings = resolve_split(out, prepared, options)
        if options.split_file:
            write_split(out / SPLIT_FILE, split, options.split, options.seed)
        write_manifest(out, results, split)
    for message in split_warnings:
        say(f"warning: {message}")
    order = {s.clip_id: i for i, s in enumerate(sources)}
    results.sort(key=lambda r: order.get(r.clip_id, 0))
    return PrepareReport(results, input_errors, out, split_problems(split, prepared))


def check_output_folder(out: Path, inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse an output folder that is an input or inside an input folder: its clips (high.mkv, low.mkv)
    would be read back as inputs on the next run, and a clip folder could replace an input."""
    target = out.resolve()
    for raw in inputs:
        src = Path(raw).resolve()
        if target == src or (src.is_dir() and target.is_relative_to(src)):
            raise UsageError(
                f"--output {out} is inside the input {raw}: prepared clips would be read back as inputs; "
                "write them elsewhere"
            )


def check_sources_outside_clips(out: Path, sources: list[ClipSource]) -> None:
    """Refuse an input that lives in a clip folder this run writes (OUT/<clip_id>/, replaced as a whole)."""
    for source in sources:
        folder = (out / source.clip_id).resolve()
        for other in sources:
            if other.path.resolve().is_relative_to(folder):
                raise UsageError(
                    f"the input {other.path} is inside {out / source.clip_id}, which prepare writes: "
                    "move it or choose another --output"
                )


def _prepared_subjects(out_dir: Path, results: list[ClipResult]) -> set[str]:
    """Subjects with at least one complete clip: this run's results, then earlier manifest rows."""
    subjects = {r.subject for r in results if r.status == "ok"}
    ran = {r.clip_id for r in results}
    for row in _read_manifest(out_dir / MANIFEST).values():
        if (
            row.get("clip_id") not in ran
            and row.get("status") == "ok"
            and is_complete(out_dir / row["clip_id"])
        ):
            subjects.add(str(row["subject"]))
    return subjects


# ----------------------------------------------------------------------------------------------------------
# Identity only


def prepare_identity(
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    size: int = 192,
    crop_scale: float = 1.8,
    landmarks: str = "auto",
    detector: str = "auto",
    weights_dir: str | None = None,
    device: str = "cpu",
) -> Path:
    """Align one photo (or a video's first frame) into a (size, size) identity image written at `output`."""
    from facenhance_cli import faces
    from facenhance_cli.video import IMAGE_SUFFIXES, iter_frames, read_image, write_image

    src = Path(input_path)
    if not src.exists():
        raise InputError(f"not found: {src}")
    out = Path(output)
    if out.is_dir() or not out.suffix:
        out = out / f"{src.stem}_identity.png"
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"--output {out} must be an image file (.png, .jpg)")
    from facenhance_cli.fileio import check_writable, refuse_inputs_as_outputs

    refuse_inputs_as_outputs([out], [src])
    check_writable(out.parent)
    if src.is_file() and src.suffix.lower() in IMAGE_SUFFIXES:
        image = read_image(src)
    else:
        image = next(iter(iter_frames(src)))
    det = faces.default_detector(landmarks, detector, weights_dir, device)
    aligned = faces.align_identity(image, size=size, crop_scale=crop_scale, detector=det)
    write_image(out, aligned)
    return out


def result_dict(result: ClipResult) -> dict[str, Any]:
    """A ClipResult as a plain dict (for --json style output and tests)."""
    return asdict(result)
