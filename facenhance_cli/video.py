"""Video and image I/O: the only module that imports av. Frames are uint8 RGB (H, W, 3) at this edge."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facenhance_cli.errors import InputError
from facenhance_cli.fileio import atomic_path

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.container import InputContainer, OutputContainer
    from av.video.stream import VideoStream

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".gif", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv"}
MP4_AUDIO_CODECS = {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}  # what the mp4 muxer takes as is
FRAME_FOLDER_FPS = Fraction(25)  # frame folders carry no rate; MUG was recorded at 19 fps, most others 25


@dataclass(frozen=True)
class VideoInfo:
    """What a reader learns about a video before decoding it."""

    path: Path
    fps: Fraction
    n_frames: int  # from the container; 0 when unknown
    width: int
    height: int
    has_audio: bool


def is_frame_folder(path: Path) -> bool:
    """A folder whose files include images (one clip, frames in name order)."""
    return path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())


def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def has_pyav() -> bool:
    """PyAV is installed (a dependency; a bare GPU machine may have only OpenCV: reading falls back to it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("av") is not None
    except ValueError:  # sys.modules["av"] is None: its import is blocked
        return False


def _opencv_capture(path: Path):
    """An opened cv2.VideoCapture: the reader where PyAV is missing (frames only, no audio or rotation)."""
    import cv2

    if not path.exists():
        raise InputError(f"file not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"cannot read video {path}: OpenCV cannot open it (PyAV is not installed)")
    return capture


def _opencv_probe(path: Path) -> VideoInfo:
    import cv2

    capture = _opencv_capture(path)
    try:
        fps = Fraction(capture.get(cv2.CAP_PROP_FPS) or 25).limit_denominator(1001)
        n_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        width, height = (
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        return VideoInfo(path, fps, n_frames, width, height, False)
    finally:
        capture.release()


def _opencv_frames(path: Path) -> Iterator[np.ndarray]:
    import cv2

    capture = _opencv_capture(path)
    n = 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            n += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()
    if n == 0:
        raise InputError(f"video has no decodable frames: {path}")


def _open(path: Path):
    import av

    if not path.exists():
        raise InputError(f"file not found: {path}")
    try:
        container = av.open(str(path))
    except InterruptedError:  # a signal cut a blocked open short (a FIFO with no writer): stop the run
        raise KeyboardInterrupt from None
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(f"cannot read video {path}: {reason}") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"no video stream in {path}")
    return container


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Rate, size, frame count and audio presence of a video file or frame folder."""
    path = Path(path)
    if path.is_dir():
        files = _frame_files(path)
        if not files:
            raise InputError(f"no image frames in folder {path}")
        first = read_image(files[0])
        return VideoInfo(path, FRAME_FOLDER_FPS, len(files), first.shape[1], first.shape[0], False)
    if not has_pyav():
        return _opencv_probe(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(25)
        return VideoInfo(
            path=path,
            fps=Fraction(fps),
            n_frames=int(stream.frames or 0),
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            has_audio=bool(container.streams.audio),
        )
    finally:
        container.close()


def count_frames(path: str | os.PathLike[str]) -> int:
    """Exact frame count of a video (demuxes packets, no decoding) or of a frame folder."""
    path = Path(path)
    if path.is_dir():
        return len(_frame_files(path))
    if not has_pyav():
        return sum(1 for _ in _opencv_frames(path))
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)
    except InterruptedError:
        raise KeyboardInterrupt from None
    except av.error.FFmpegError:
        return 0
    finally:
        container.close()


def _rotate(frame: np.ndarray, degrees: int) -> np.ndarray:
    # Display-matrix rotation is counter-clockwise in degrees; np.rot90 k counts counter-clockwise turns.
    k = (round(degrees / 90)) % 4
    return np.ascontiguousarray(np.rot90(frame, k=k)) if k else frame


def iter_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Decode frames one at a time as uint8 RGB (H, W, 3), honouring rotation metadata; memory stays bounded."""
    path = Path(path)
    if path.is_dir():
        files = _frame_files(path)
        if not files:
            raise InputError(f"no image frames in folder {path}")
        for file in files:
            yield read_image(file)
        return
    if not has_pyav():
        yield from _opencv_frames(path)
        return
    import av

    container = _open(path)
    n = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            rotation = int(getattr(frame, "rotation", 0) or 0)
            yield _rotate(rgb, rotation)
            n += 1
    except InterruptedError:  # a signal cut a blocked read short: stop the run, not "a truncated tail"
        raise KeyboardInterrupt from None
    except av.error.FFmpegError as exc:
        if n == 0:
            raise InputError(f"cannot decode video {path}: {exc}") from None
        # A truncated tail: keep the frames decoded so far.
    finally:
        container.close()
    if n == 0:
        raise InputError(f"video has no decodable frames: {path}")


def read_video(path: str | os.PathLike[str], max_frames: int | None = None) -> tuple[np.ndarray, Fraction]:
    """All frames (F, H, W, 3) uint8 RGB and the frame rate."""
    info = probe_video(path)
    frames = []
    for i, frame in enumerate(iter_frames(path)):
        if max_frames is not None and i >= max_frames:
            break
        frames.append(frame)
    return np.stack(frames), info.fps


def read_frames_at(path: str | os.PathLike[str], indices: list[int]) -> tuple[dict[int, np.ndarray], int]:
    """Only the frames at `indices` (uint8 RGB (H, W, 3)) and how many frames were decoded to reach them.

    Decoding stops after the last index; a frame folder reads only the files asked for. Indices past a
    truncated end are absent from the dict (the count says where decoding stopped).
    """
    path = Path(path)
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return {}, 0
    if path.is_dir():
        files = _frame_files(path)
        if not files:
            raise InputError(f"no image frames in folder {path}")
        return {i: read_image(files[i]) for i in wanted if 0 <= i < len(files)}, len(files)
    out: dict[int, np.ndarray] = {}
    last = wanted[-1]
    keep = set(wanted)
    n = 0
    for i, frame in enumerate(iter_frames(path)):
        n = i + 1
        if i in keep:
            out[i] = frame
        if i >= last:
            break
    return out, n


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log lines (printed straight to stderr) for the duration of the block."""
    import cv2

    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None and hasattr(logging, "setLogLevel"):
        previous = logging.getLogLevel()
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
        try:
            yield
        finally:
            logging.setLogLevel(previous)
    elif hasattr(cv2, "setLogLevel"):  # older OpenCV builds
        previous = cv2.getLogLevel()  # type: ignore[attr-defined]
        cv2.setLogLevel(0)
        try:
            yield
        finally:
            cv2.setLogLevel(previous)
    else:
        yield


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Any image file as uint8 RGB (H, W, 3): grayscale expanded, alpha dropped, 16-bit scaled down."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise InputError(not_a_file_message(path, "image"))
    data = np.fromfile(str(path), dtype=np.uint8)
    # IMREAD_COLOR | IMREAD_ANYDEPTH applies EXIF orientation (phone portraits) and keeps 16-bit depth;
    # IMREAD_UNCHANGED would ignore the orientation. Grey becomes 3 channels and alpha is dropped.
    with quiet_opencv():  # a broken file is our one line, not OpenCV's [ WARN ] / [ERROR ] lines first
        image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH) if data.size else None
    if image is None:
        raise InputError(f"cannot read image {path}")
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(image)


def not_a_file_message(path: Path, what: str) -> str:
    """Why `path` cannot be read as a `what` file: missing, a folder, or not a regular file (FIFO, device)."""
    if not path.exists():
        return f"{what} not found: {path}"
    a_what = f"{'an' if what[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {what}"
    if path.is_dir():
        return f"{path} is a folder, not {a_what} file"
    return f"{path} is not a regular file (a FIFO or a device): give {a_what} file"


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a uint8 RGB (H, W, 3) image atomically; the format follows the suffix."""
    import cv2

    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"cannot encode image as {path.suffix}")
    with atomic_path(path) as tmp:
        encoded.tofile(str(tmp))


class VideoWriter:
    """Streams uint8 RGB frames to a video, written to a temporary file and renamed on `close()`.

    `lossless=True` writes FFV1 (bit-exact RGB; use .mkv), otherwise H.264 (CRF 17) in mp4.
    With `audio_from`, the audio stream of that file is copied in unchanged (passthrough).
    Leaving the `with` block through an exception deletes the temporary file: no partial output.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: Fraction | float,
        lossless: bool = False,
        audio_from: str | os.PathLike[str] | None = None,
        crf: int = 17,
    ) -> None:
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001 * 1000)
        self.lossless = lossless
        self.audio_from = Path(audio_from) if audio_from else None
        self.crf = crf
        self._atomic = atomic_path(self.path)
        self._tmp: Path | None = None
        self._container: OutputContainer | None = None
        self._stream: VideoStream | None = None
        self._audio_source: InputContainer | None = None
        self._audio_out: AudioStream | None = None
        self.n_frames = 0

    def __enter__(self) -> VideoWriter:
        self._tmp = self._atomic.__enter__()
        return self

    def _start(self, width: int, height: int) -> None:
        import av

        self._open_streams(width, height, with_audio=self.audio_from is not None)
        if self._audio_out is None:
            return
        try:
            assert self._container is not None
            self._container.start_encoding()  # writes the header: fails now if the muxer refuses the audio
        except (ValueError, av.error.FFmpegError):
            # This container cannot hold the source's audio codec (e.g. PCM in .mp4): keep the video only.
            self._close_container()
            self._open_streams(width, height, with_audio=False)

    def _open_streams(self, width: int, height: int, with_audio: bool) -> None:
        import av

        self._container = av.open(str(self._tmp), mode="w")
        if self.lossless:
            stream = self._container.add_stream("ffv1", rate=self.fps)
            stream.pix_fmt = "bgr0"
        else:
            stream = self._container.add_stream("libx264", rate=self.fps)
            stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
            # Reproducible H.264: the same frames give the same bytes. x264's threading makes the output
            # depend on the thread count (machine, load), and its macroblock-tree lookahead gave different
            # bytes from run to run even on one thread (measured with PyAV 18's x264: up to 10 variants in
            # 10 encodes, decoded frames up to 21 levels apart); without it, 30 of 30 encodes were equal.
            # At 192x192 neither costs much.
            stream.options = {
                "crf": str(self.crf),
                "preset": "medium",
                "threads": "1",
                "x264-params": "mbtree=0",
            }
            stream.codec_context.thread_count = 1
        stream.width = width
        stream.height = height
        self._stream = stream
        if with_audio:
            self._add_audio_stream()

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 RGB (H, W, 3) frame."""
        import av

        if self._stream is None:
            self._start(frame.shape[1], frame.shape[0])
        assert self._stream is not None and self._container is not None  # set together by _start
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, dtype=np.uint8), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.n_frames += 1

    def _add_audio_stream(self) -> None:
        """Declare the passthrough audio stream; it must exist before the first packet writes the header."""
        import av

        assert self._container is not None  # called from _start, after the container is open
        try:
            source = av.open(str(self.audio_from))
        except InterruptedError:
            raise KeyboardInterrupt from None
        except (av.error.FFmpegError, OSError):
            return
        if not source.streams.audio:
            source.close()
            return
        codec = source.streams.audio[0].codec_context.name
        if self.path.suffix.lower() == ".mp4" and codec not in MP4_AUDIO_CODECS:
            source.close()  # e.g. PCM from .avi/.mov: mp4 cannot hold it; keep the video, drop the audio
            return
        try:
            self._audio_out = self._container.add_stream_from_template(source.streams.audio[0])
        except (ValueError, av.error.FFmpegError):
            source.close()  # the output container cannot hold this codec: drop the audio, keep the video
            return
        self._audio_source = source

    def _copy_audio(self) -> None:
        source = self._audio_source
        if source is None:
            return
        try:
            assert self._container is not None and self._audio_out is not None  # set with _audio_source
            for packet in source.demux(source.streams.audio[0]):
                if packet.dts is None:
                    continue
                packet.stream = self._audio_out
                self._container.mux(packet)
        finally:
            source.close()
            self._audio_source = None

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if self._stream is None:
                    raise InputError(f"no frames to write to {self.path}")
                assert self._container is not None  # set together with _stream
                for packet in self._stream.encode():
                    self._container.mux(packet)
                self._copy_audio()
                self._close_container(check=True)  # the trailer: a failure here is a failed write
        except BaseException as error:
            self._close_container(check=False)
            self._atomic.__exit__(type(error), error, error.__traceback__)
            raise
        self._close_container(check=False)
        self._atomic.__exit__(exc_type, exc, tb)

    def _close_container(self, check: bool = False) -> None:
        """Close input and output; with `check=False` (cleaning up after an error) close errors are ignored."""
        if self._audio_source is not None:
            self._audio_source.close()
            self._audio_source = None
        self._audio_out = None
        if self._container is not None:
            container, self._container = self._container, None
            try:
                container.close()
            except Exception:
                if check:
                    raise


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray,
    fps: Fraction | float,
    lossless: bool = False,
    audio_from: str | os.PathLike[str] | None = None,
) -> None:
    """Write (F, H, W, 3) uint8 RGB frames as a video, atomically."""
    with VideoWriter(path, fps, lossless=lossless, audio_from=audio_from) as writer:
        for frame in frames:
            writer.write(frame)
