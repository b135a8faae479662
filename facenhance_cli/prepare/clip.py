"""One clip through the pipeline: frames, landmarks tracked over time, steady high crop, aligned low
faces, written atomically (meta.json last); and one photo aligned into an identity image."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from facenhance_cli.errors import (
    FacenhanceError,
    InputError,
    NoFaceError,
    UsageError,
    first_line,
    raise_if_interrupted,
)
from facenhance_cli.fileio import write_text
from facenhance_cli.motion import MOTION_FILE, HeadMotion, estimate_motion, motion_csv_text
from facenhance_cli.prepare.inputs import ClipSource, parse_segment, resample_indices
from facenhance_cli.prepare.options import FORMAT_VERSION, META, TMP_PREFIX, ClipResult, PrepareOptions
from facenhance_cli.provenance import versions


def _round(array: np.ndarray, digits: int = 2) -> list:
    return np.round(np.asarray(array, np.float64), digits).tolist()


def stored_high_landmarks(meta_path: Path, size: int) -> np.ndarray | None:
    """(F, 68, 2) landmarks a clip's meta.json holds for its high frames, scaled to `size` px; None when the
    file or its landmarks are missing or malformed."""
    try:
        meta = json.loads(Path(meta_path).read_text())
        landmarks = np.asarray(meta["landmarks_high"], np.float64) * (size / float(meta["size"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2) or not np.isfinite(landmarks).all():
        return None
    return landmarks


def is_complete(clip_dir: Path) -> bool:
    """A clip folder is complete when its meta.json (written last) is there."""
    return (clip_dir / META).is_file()


def _read_selection(
    path: Path, options: PrepareOptions, n_total: int
) -> tuple[int, int, list[int], dict[int, np.ndarray], int]:
    """Segment (start, end), the indices resampled in it, the frames decoded at them, frames decoded."""
    from facenhance_cli.video import read_frames_at

    start, end = parse_segment(options.segment, n_total)
    indices = resample_indices(start, end, options.frames)
    frames, n_decoded = read_frames_at(path, indices)
    return start, end, indices, frames, n_decoded


def _load_frames(source: ClipSource, options: PrepareOptions) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The N selected frames and where they came from (segment, indices, fps)."""
    from facenhance_cli.video import count_frames, probe_video

    info = probe_video(source.path)
    n_total = info.n_frames or count_frames(source.path)
    if n_total <= 0:
        raise InputError("the clip has no frames")
    start, end, indices, frames, n_decoded = _read_selection(source.path, options, n_total)
    if len(frames) < len(set(indices)):
        # The container promised more frames than decode gave (truncated or miscounted): re-select
        # over what is really there.
        n_total = n_decoded
        if n_total <= 0:
            raise InputError("the clip has no decodable frames")
        start, end, indices, frames, _ = _read_selection(source.path, options, n_total)
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
        return _done_earlier(final, options, result)
    tmp = out_dir / f"{TMP_PREFIX}{source.clip_id}-{uuid.uuid4().hex[:8]}"
    try:
        det = detector or faces.default_detector(
            options.landmarks, options.detector, options.weights_dir, options.device
        )
        template = faces.alignment_template(options.weights_dir)
        frames, where = _load_frames(source, options)
        result.warnings, repeats = _repeat_warnings(where, options.frames)
        result.notes.extend(repeats)
        meta = _make_clip(tmp, frames, where, (det, template), options, on_frame, result.notes)
        meta = {**_source_meta(source), **meta, "warnings": result.warnings}
        # Last: its presence marks the clip complete. One key per line, arrays inline (readable, small).
        body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in meta.items())
        write_text(tmp / META, "{\n" + body + "\n}\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        result.status, result.n_frames = "ok", len(frames)
    except Exception as exc:  # a bad clip never stops the batch
        raise_if_interrupted(exc)  # ... but a signal does (a read cut short by SIGTERM)
        result.reason = _failure_reason(exc)
        result.warnings = []
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        result.seconds = time.perf_counter() - t0
    return result


def _repeat_warnings(where: dict[str, Any], frames: int) -> tuple[list[str], list[str]]:
    """(warnings, notes) about frames repeated to make up --frames: a single source frame makes a clip
    without motion (a warning); a segment shorter than --frames repeats some (a note)."""
    distinct = len(set(where["frame_indices"]))
    if distinct >= frames:
        return [], []
    if distinct == 1:
        start, end = where["segment"]
        one = "the video has" if where["n_source_frames"] == 1 else f"the segment {start}:{end} holds"
        return [f"{one} a single frame: {frames} copies of it, no motion (a still image?)"], []
    return [], [f"{distinct} source frames for {frames}: some repeated"]


def _done_earlier(final: Path, options: PrepareOptions, result: ClipResult) -> ClipResult:
    """A clip complete from an earlier run: ok, with a note when its settings differ from these."""
    result.status, result.done_earlier = "ok", True
    try:
        meta = json.loads((final / META).read_text())
        result.n_frames = int(meta.get("n_frames", 0))
        result.warnings = [str(w) for w in meta.get("warnings", [])]  # said again: still true of the clip
        made_with = {"low_alignment": "landmarks", **meta.get("settings", {})}  # before the option: landmarks
        if meta.get("settings") and made_with != options.fingerprint():
            result.notes.append("prepared earlier with other settings (use --overwrite to redo)")
    except (OSError, ValueError):
        pass
    return result


def _failure_reason(exc: Exception) -> str:
    """Why a clip failed, in one line (FACENHANCE_DEBUG=1 re-raises an internal error for its traceback)."""
    if isinstance(exc, FacenhanceError):
        return first_line(exc, type(exc).__name__)
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OSError):
        if exc.errno == 28:
            return "disk full"
        return f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
    if os.environ.get("FACENHANCE_DEBUG"):
        raise exc
    return f"internal error ({type(exc).__name__}: {first_line(exc)})"


def _source_meta(source: ClipSource) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "clip_id": source.clip_id,
        "source": str(source.path.resolve()),
        "subject": source.subject,
        "expression": source.expression,
        "take": source.take,
    }


def _make_clip(
    tmp: Path,
    frames: list[np.ndarray],
    where: dict[str, Any],
    models: tuple[Any, Any],
    options: PrepareOptions,
    on_frame: Callable[[int], None] | None,
    notes: list[str],
) -> dict[str, Any]:
    """Track the face, crop and align, write the clip's videos into `tmp` -> meta.json's entries.

    `models` is (landmark detector, alignment template)."""
    from facenhance_cli import faces

    det, template = models
    track, face_px = _track_face(frames, det, options, on_frame, notes)
    landmarks = track.landmarks
    box = faces.steady_crop_box(landmarks, frames[0].shape[:2], options.crop_scale)
    high = np.stack([faces.crop_resize(f, box, options.size) for f in frames])
    landmarks_high = faces.box_to_crop(landmarks, box, options.size)
    motion = estimate_motion(high[0], high, landmarks_high, landmarks_high[0])
    matrices = low_matrices(landmarks, template, (box, motion), options)
    aligned = [
        faces.align_face_by(f, lm, m, options.low_size)
        for f, lm, m in zip(frames, landmarks, matrices, strict=True)
    ]
    low = np.stack([a.image for a in aligned])
    h, w = frames[0].shape[:2]
    if box.x < 0 or box.y < 0 or box.x + box.side > w or box.y + box.side > h:
        notes.append("crop reaches outside the frame: edges replicated")
    tmp.mkdir(parents=True)
    _write_clip(tmp, high, low, Fraction(where["fps_out"]).limit_denominator(100000), options.preview)
    write_text(tmp / MOTION_FILE, motion_csv_text(motion))
    raw = [None if not ok else _round(r) for ok, r in zip(track.found, track.raw, strict=True)]
    return {
        "n_frames": len(frames),
        **where,
        "size": options.size,
        "low_size": options.low_size,
        "settings": options.fingerprint(),
        "detector": det.detector_name,
        "landmark_backend": det.backend,
        "template": template.source,
        "faces_max_per_frame": track.faces_max,
        "face_found": track.found.tolist(),  # detected (False: fitted near neighbours or interpolated)
        "face_size_px": round(face_px, 1),
        "crop_box": box.as_list(),
        "landmarks_source": _round(landmarks),
        "landmarks_source_raw": raw,
        "landmarks_high": _round(landmarks_high),
        "motion": MOTION_FILE,  # the head's motion relative to frame 0 (the identity image), per frame
        "low_alignment": options.low_alignment,
        "landmarks_low": _round(np.stack([a.landmarks for a in aligned])),
        "low_transforms": [_round(a.matrix, 5) for a in aligned],
        "notes": notes,
        "versions": {**versions("numpy", "opencv", "av"), **det.versions()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def low_matrices(
    landmarks: np.ndarray, template: Any, crop: tuple[Any, HeadMotion], options: PrepareOptions
) -> list[np.ndarray]:
    """Each frame's (2, 3) source -> low transform for --low-alignment; `crop` is (box, registered motion).

    "landmarks": frame n's own OpenFace alignment A_n. "steady": A_0 B^-1 M_n^-1 B, with B the source ->
    high crop and M_n motion.csv's move, so the low face moves against the frame only as the head does."""
    from facenhance_cli import faces

    own = [faces.openface_align_matrix(lm, template, options.low_size) for lm in landmarks]
    if options.low_alignment == "landmarks":
        return own
    box, motion = crop
    to_high = faces.as_3x3(faces.crop_matrix(box, options.size))  # B
    frame0 = faces.as_3x3(own[0]) @ np.linalg.inv(to_high)  # A_0 B^-1
    moves = [faces.as_3x3(motion.matrix(n, options.size)) for n in range(len(landmarks))]  # M_n
    return [(frame0 @ np.linalg.inv(move) @ to_high)[:2] for move in moves]


def _track_face(
    frames: list[np.ndarray],
    det: Any,
    options: PrepareOptions,
    on_frame: Callable[[int], None] | None,
    notes: list[str],
) -> tuple[Any, float]:
    """Landmarks tracked over the clip, and the median face size in px; too few or too small faces raise."""
    from facenhance_cli import faces

    n = len(frames)
    track = faces.track_landmarks(frames, det, options.smooth, on_frame)
    if track.n_missing > options.max_missing * n:
        raise NoFaceError(
            f"no face in {track.n_missing}/{n} frames (more than --max-missing {options.max_missing})"
        )
    face_px = float(np.median([faces.landmark_extent(lm) for lm in track.landmarks]))
    if face_px < options.min_face:
        raise InputError(f"face too small ({face_px:.0f} px < --min-face {options.min_face:.0f})")
    if track.faces_max > 1:
        notes.append(f"{track.faces_max} faces in a frame: kept the most consistent one")
    if track.n_missing:
        notes.append(
            f"no face detected in {track.n_missing}/{n} frames: {track.n_recovered} fitted around the "
            f"neighbours' landmarks, {track.n_missing - track.n_recovered} interpolated"
        )
    return track, face_px


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
