"""One video of an `enhance` run: its inputs (identity image, low frames), the warnings they earn, and its
outputs (the video, --compare, --save-frames), opened together and closed or deleted together."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from facenhance_cli.config import FacenhanceConfig
from facenhance_cli.enhance.motion import JobMotion
from facenhance_cli.enhance.planning import (
    PREPARED_LOW,
    EnhanceJob,
    EnhanceOptions,
    JobResult,
    compare_path,
    frames_path,
)
from facenhance_cli.errors import InputError, one_line, raise_if_interrupted
from facenhance_cli.fileio import temp_path_for

if TYPE_CHECKING:
    from facenhance_cli.video import VideoWriter


def load_identity(path: Path, size: int, weights_dir: Path | None = None) -> tuple[np.ndarray, str | None]:
    """The identity image at size x size: used as is when already that size, else aligned like prepare does."""
    from facenhance_cli.video import read_image

    image = read_image(path)
    if image.shape[0] == size and image.shape[1] == size:
        return image, None
    from facenhance_cli.faces import align_identity, default_detector

    aligned = align_identity(image, size=size, detector=default_detector(weights_dir=weights_dir))
    return aligned, f"{path.name}: {image.shape[1]}x{image.shape[0]} photo aligned to {size}x{size}"


def low_frame_stream(
    path: Path, low_size: int, prepare_input: bool, weights_dir: Path | None = None
) -> tuple[Generator[np.ndarray, None, None], str | None]:
    """Low frames at low_size x low_size: resized when needed, or run through prepare's alignment first."""
    import cv2

    from facenhance_cli.video import iter_frames, probe_video

    info = probe_video(path)
    if prepare_input:
        aligned = prepared_low_frames(path, low_size, weights_dir)
        return (frame for frame in aligned), f"{path.name}: faces aligned with prepare's low pipeline"
    note = None
    if (info.width, info.height) != (low_size, low_size):
        note = f"{path.name}: {info.width}x{info.height} frames resized to {low_size}x{low_size}"

    def frames() -> Generator[np.ndarray, None, None]:
        for frame in iter_frames(path):
            if frame.shape[:2] != (low_size, low_size):
                frame = cv2.resize(frame, (low_size, low_size), interpolation=cv2.INTER_AREA)
            yield frame

    return frames(), note


def prepared_low_frames(path: Path, low_size: int, weights_dir: Path | None = None) -> list[np.ndarray]:
    """A real (not black-background) video -> OpenFace-style aligned faces on black, as `prepare` makes them
    by default (`--low-alignment steady`: frame 0 on its landmarks, the others moved with the head's
    registered motion)."""
    from facenhance_cli import faces
    from facenhance_cli.enhance.motion import real_video_motion, tracked_video
    from facenhance_cli.prepare.clip import low_matrices
    from facenhance_cli.prepare.options import PrepareOptions

    frames, landmarks = tracked_video(path, weights_dir)
    template = faces.alignment_template(weights_dir)
    options = PrepareOptions(low_size=low_size)
    box = faces.steady_crop_box(landmarks, frames[0].shape[:2], options.crop_scale)
    motion = real_video_motion(path, options.size, weights_dir)
    matrices = low_matrices(landmarks, template, (box, motion), options)
    return [
        faces.align_face_by(f, lm, m, low_size).image
        for f, lm, m in zip(frames, landmarks, matrices, strict=True)
    ]


def display_name(path: Path) -> str:
    """A short name for messages: the file name, with its clip folder for prepare's low.mkv files."""
    return f"{path.parent.name}/{path.name}" if path.name == PREPARED_LOW else path.name


def low_video_warnings(path: Path, n_frames: int, first: np.ndarray, prepared: bool) -> list[str]:
    """What makes a low video likely garbage in, from its first (low_size, low_size, 3) uint8 frame.

    A `prepare`-style low frame is a colour face on black: a still image, a flat frame, a grey one or one
    without a black surround (noise, a real video not run through --prepare-input) is worth a warning.
    """
    from facenhance_cli.video import IMAGE_SUFFIXES

    label = display_name(path)
    out = []
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        out.append(f"{label} is a still image, not a video (one frame)")
    elif n_frames == 1:
        out.append(f"{label} has a single frame")
    frame = first.astype(np.int16)
    if frame.std() < 3:
        out.append(f"{label}: the first frame is flat (value {int(frame.mean())}): a blank video?")
        return out
    if np.abs(frame - frame[..., :1]).max() <= 2:
        out.append(f"{label} is grayscale: the model expects colour faces")
    # Aligned low faces leave the corners outside the landmark hull black: about a fifth of the frame
    # on prepared clips, three quarters on small faces. Noise has almost no black pixel (0.07 %).
    if not prepared and (frame.max(axis=2) < 24).mean() < 0.05:
        out.append(
            f"{label} does not look like a face on black (as `prepare` makes): "
            "use --prepare-input for a real video"
        )
    return out


def identity_warnings(path: Path, image: np.ndarray) -> list[str]:
    """A blank or grayscale identity image is worth a warning (a face-less one shows in the paste match)."""
    pixels = image.astype(np.int16)
    if pixels.std() < 3:
        return [f"identity image {path.name} is flat (value {int(image.mean())}): no face to copy"]
    if np.abs(pixels - pixels[..., :1]).max() <= 2:
        return [f"identity image {path.name} is grayscale: the model expects a colour photo"]
    return []


def template_warning(weights_dir: Path | None) -> str | None:
    """--prepare-input without the OpenFace PDM aligns to the fallback template: worth a warning, as
    `prepare` gives (a model trained on PDM-aligned data misreads those faces)."""
    from facenhance_cli import faces

    if faces.alignment_template(weights_dir).source.startswith("openface-pdm"):
        return None
    return (
        "--prepare-input: the OpenFace PDM (openface_pdm) is not in the weights lookup (--weights-dir, "
        "FACENHANCE_WEIGHTS, the cache): faces are aligned to CMU OpenFace's template instead, which "
        "models trained on PDM-aligned data do not expect"
    )


def expected_frames(low: Path) -> int:
    """Frames a `prepare` clip's low.mkv should decode to (its meta.json's n_frames); 0 when unknown."""
    import json

    meta = low.parent / "meta.json"
    if low.name != PREPARED_LOW or not meta.is_file():
        return 0
    try:
        n = json.loads(meta.read_text()).get("n_frames", 0)
    except (OSError, ValueError, AttributeError):
        return 0
    return n if isinstance(n, int) and n > 0 else 0


def frames_shortfall(low: Path, decoded: int, expected: int) -> str | None:
    """A warning when a prepared clip's low.mkv decoded fewer frames than its meta.json lists (truncated)."""
    if expected <= 0 or decoded >= expected:
        return None
    return (
        f"{display_name(low)} decoded {decoded} of the {expected} frames its meta.json lists "
        "(truncated? rerun `prepare --overwrite` on that clip)"
    )


@dataclass
class OpenVideo:
    """One video in the batch; `stack` holds its low-frame reader and its writers (and frames folder)."""

    job: EnhanceJob
    stack: ExitStack
    frames: Iterator[np.ndarray]
    writers: list[VideoWriter]  # the output video, then the --compare video when asked for
    frames_dir: Path | None  # --save-frames: the temporary PNG folder, renamed when the video is done
    identity_image: np.ndarray  # (S, S, 3) uint8
    low: np.ndarray | None  # frame n's low frame; None once the video has no more
    paste_matrix: np.ndarray | None  # low px -> identity px, for models whose conditioning needs it
    warnings: list[str]
    n_frames: int  # from the container header (0 when unknown)
    expected: int = 0  # frames a prepared clip's meta.json lists (0 when not a prepared clip)
    strict: bool = False  # a warning found at the end (too few frames) fails the video
    motion: JobMotion | None = None  # the head follows it when known
    started: float = field(default_factory=time.perf_counter)
    n: int = 0
    ahead: list[np.ndarray] = field(default_factory=list)  # low frames read past frame n (upcoming)

    def upcoming(self, k: int) -> list[np.ndarray]:
        """Low frames n..n+k-1 (fewer at the end), read ahead; advance() consumes them in order."""
        while len(self.ahead) < k - 1:
            following = next(self.frames, None)
            if following is None:
                break
            self.ahead.append(following)
        assert self.low is not None  # videos whose frames ran out were finished
        return [self.low, *self.ahead[: k - 1]]

    def advance(self, frame: np.ndarray) -> None:
        """Write generated frame n (S, S, 3) uint8 (and its --compare row and PNG), read low frame n+1."""
        from facenhance_cli.video import write_image

        assert self.low is not None
        if self.motion is not None:  # drawn at the identity's pose; written where the head is
            frame = self.motion.move(frame, self.n)
        self.writers[0].write(frame)
        if len(self.writers) > 1:
            import cv2

            size = self.identity_image.shape[1::-1]
            low_up = cv2.resize(self.low, size, interpolation=cv2.INTER_CUBIC)
            self.writers[1].write(np.concatenate([low_up, frame, self.identity_image], axis=1))
        if self.frames_dir is not None:
            write_image(self.frames_dir / f"frame_{self.n:05d}.png", frame)
        self.n += 1
        self.low = self.ahead.pop(0) if self.ahead else next(self.frames, None)

    def close(self, error: BaseException | None) -> JobResult:
        """Close reader and writers (after `error`, deleting what they wrote) -> this video's result."""
        short = frames_shortfall(self.job.low, self.n, self.expected) if error is None else None
        if short and self.strict:
            error = InputError(f"{short} (--strict)")  # nothing written: the output is deleted below
        elif short:
            self.warnings.append(short)
        try:
            if error is None:
                self.stack.close()
            else:
                self.stack.__exit__(type(error), error, error.__traceback__)
        except Exception as exc:  # a failed close (trailer, disk full) fails this video only
            raise_if_interrupted(exc)
            error = error or exc
        seconds = time.perf_counter() - self.started
        if error is None:
            return JobResult(
                self.job, "done", self.n, seconds, warnings=self.warnings, moved=self.motion is not None
            )
        return JobResult(self.job, "failed", self.n, seconds, one_line(error))

    def abort(self, error: BaseException) -> None:
        """Interrupted: delete every output of this video, whatever else goes wrong."""
        try:
            self.stack.__exit__(type(error), error, error.__traceback__)
        except BaseException:
            pass


def open_video(
    job: EnhanceJob,
    identity_image: np.ndarray,
    config: FacenhanceConfig,
    options: EnhanceOptions,
    notes: list[str],
    earlier: list[str] | None = None,
) -> OpenVideo:
    """Check one job's inputs and open its reader and writers in one ExitStack (closed again on any error).

    `earlier`: warnings about this job found before its inputs were opened (an empty existing output)."""
    from facenhance_cli.video import VideoWriter, probe_video

    with ExitStack() as stack:
        info = probe_video(job.low)
        low_size = config.encoder.low_size
        frames, note = low_frame_stream(job.low, low_size, options.prepare_input, options.weights_dir)
        stack.callback(frames.close)
        if note:
            notes.append(note)
        first = next(frames, None)
        if first is None:
            raise InputError(f"{job.low}: no frames")
        warnings = [*(earlier or []), *identity_warnings(job.identity, identity_image)]
        if options.prepare_input and (warning := template_warning(options.weights_dir)):
            warnings.append(warning)
        warnings += low_video_warnings(job.low, info.n_frames, first, options.prepare_input)
        paste_matrix = locate_face(job, identity_image, first, config, warnings)
        motion = job_motion(job, identity_image, info.n_frames, options, warnings)
        if options.strict and warnings:
            raise InputError(f"{warnings[0]} (--strict)")
        frames_dir = None
        if options.save_frames:  # written under a temporary name, renamed when the video is done
            frames_dir = temp_path_for(frames_path(job.output))
            frames_dir.mkdir(parents=True)
            stack.push(_frames_dir_exit(frames_dir, frames_path(job.output)))
        audio_from = job.low if info.has_audio else None
        writers = [stack.enter_context(VideoWriter(job.output, info.fps, options.lossless, audio_from))]
        if options.compare:
            compare = VideoWriter(compare_path(job.output), info.fps, lossless=options.lossless)
            writers.append(stack.enter_context(compare))
        parts = (frames, writers, frames_dir, identity_image, first, paste_matrix, warnings, info.n_frames)
        return OpenVideo(job, stack.pop_all(), *parts, expected_frames(job.low), options.strict, motion)


def job_motion(
    job: EnhanceJob, identity_image: np.ndarray, n_frames: int, options: EnhanceOptions, warnings: list[str]
) -> JobMotion | None:
    """The job's head motion and the identity's head layer when the motion is known and moves the head
    (`enhance.motion`); a warning when a prepared clip has none or the identity image has no face."""
    from facenhance_cli.enhance import motion as sources
    from facenhance_cli.motion import head_layer

    path = sources.motion_file_for(job.low, job.motion, options.no_motion)
    motion = sources.check_motion_file(path, n_frames) if path is not None else None
    if motion is None and options.prepare_input and not options.no_motion:
        motion = sources.real_video_motion(job.low, identity_image.shape[0], options.weights_dir)
    if motion is None:
        if not options.no_motion and sources.prepared_without_motion(job.low):
            warnings.append(f"{display_name(job.low)}: no motion.csv (prepared before head motion was measured): "
                            "the head stays where the identity image has it; prepare it again to follow it")  # fmt: skip
        return None
    if not motion.moves(identity_image.shape[0]):
        return None
    points = sources.identity_landmarks(job.low, identity_image, options.weights_dir)
    if points is None:
        warnings.append(f"{job.identity.name}: no face found to move with the head motion: the head stays")
        return None
    return sources.JobMotion(motion, head_layer(identity_image, points))


def locate_face(
    job: EnhanceJob,
    identity_image: np.ndarray,
    first: np.ndarray,
    config: FacenhanceConfig,
    warnings: list[str],
) -> np.ndarray | None:
    """Where the first low frame's face sits in the identity image (low px -> identity px), for models whose
    conditioning needs it (a warning added when it is not found), else None."""
    from facenhance_cli.conditioning import needs_paste_matrix

    if not needs_paste_matrix(config):
        return None
    from facenhance_cli.pasting import MIN_SCORE, locate_low_face

    paste_matrix, score = locate_low_face(identity_image, first)
    if score < MIN_SCORE:
        warnings.append(
            f"{display_name(job.low)}: its first frame's face was not found in the identity image "
            f"(match {score:.2f}); is it the same person, cropped like `prepare` does?"
        )
    return paste_matrix


ExitCallback = Callable[[type[BaseException] | None, BaseException | None, TracebackType | None], bool]


def _frames_dir_exit(tmp: Path, final: Path) -> ExitCallback:
    """An exit callback: rename the temporary PNG folder to `final` on success, delete it otherwise."""

    def exit_(
        exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if not tmp.exists():
            return False
        if exc_type is None:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        return False

    return exit_
