"""`prepare`'s settings, what it reports per clip and per run, and the names of the files it writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from facenhance_cli.faces.detection import DetectorName, LandmarkBackend
    from facenhance_cli.prepare.inputs import Layout

LowAlignment = Literal["steady", "landmarks"]
LOW_ALIGNMENTS: tuple[str, ...] = get_args(LowAlignment)
MANIFEST = "manifest.jsonl"
SPLIT_FILE = "split.json"
META = "meta.json"
TMP_PREFIX = ".tmp-"
FORMAT_VERSION = 1
MAX_FRAMES = 10_000  # --frames
MAX_SIZE = 4096  # --size, --low-size
MAX_WORKERS = 1024  # --workers (processes)


@dataclass(frozen=True)
class PrepareOptions:
    """Every setting of `prepare` (defaults = the paper's MUG setting where it gives one)."""

    frames: int = 32  # N frames per clip, resampled evenly from the segment
    segment: str = "first-half"  # neutral -> apex half of MUG-like clips (paper Sec. 5.1)
    size: int = 192  # high frames
    low_size: int = 64  # low frames (aligned face on black)
    layout: Layout = "auto"
    split: float = 0.75  # train fraction of subjects
    seed: int = 0
    split_file: str | None = None
    workers: int = 1
    landmarks: LandmarkBackend = "auto"
    detector: DetectorName = "auto"
    device: str = "cpu"
    weights_dir: str | None = None
    subject_regex: str | None = None
    crop_scale: float = 1.8  # high crop side / face size (landmark extent)
    smooth: float = 1.0  # Gaussian sigma along time, in output frames
    # Low frames: "steady" = frame 0's landmark alignment composed with the registered head motion (the face
    # keeps still against the head, as a generator's output does); "landmarks" = each frame on its own
    # landmarks (OpenFace, the paper's MUG data; the low face jitters by the landmarks' noise).
    low_alignment: LowAlignment = "steady"
    max_missing: float = 0.5  # skip a clip when more than this fraction of frames has no face
    min_face: float = 40.0  # skip a clip whose face (landmark extent) is smaller, in source pixels
    preview: bool = True
    overwrite: bool = False

    def check(self) -> PrepareOptions:
        """Every number finite and in its documented range, and a --segment that parses: one line, exit 2,
        before any clip is touched."""
        import math

        from facenhance_cli.errors import InputError, UsageError
        from facenhance_cli.prepare.inputs import parse_segment

        # Upper bounds: a clip is held in memory whole (10000 frames at 192x192 is 1.1 GB), and a larger
        # value is a typo that would exhaust memory or processes rather than a setting.
        ranges = {
            "--frames": (self.frames, 1, MAX_FRAMES),
            "--size": (self.size, 16, MAX_SIZE),
            "--low-size": (self.low_size, 8, MAX_SIZE),
            "--split": (self.split, 0.0, 1.0),
            "--workers": (self.workers, 1, MAX_WORKERS),
            "--crop-scale": (self.crop_scale, 1e-3, 100.0),
            "--smooth": (self.smooth, 0.0, 1e3),
            "--max-missing": (self.max_missing, 0.0, 1.0),
            "--min-face": (self.min_face, 0.0, math.inf),
        }
        for flag, (value, low, high) in ranges.items():
            if not (math.isfinite(value) and low <= value <= high):
                bounds = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
                raise UsageError(f"{flag} must be a number {bounds}, got {value}")
        if self.low_alignment not in LOW_ALIGNMENTS:
            raise UsageError(
                f"unknown --low-alignment {self.low_alignment!r}: use {', '.join(LOW_ALIGNMENTS)}"
            )
        try:  # the format, and START before END (empty in a clip of any length otherwise)
            parse_segment(self.segment, 10**9)
        except InputError:
            raise UsageError(f"--segment {self.segment} is empty: END must come after START") from None
        return self

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change a clip's files (a finished clip made with others is reported)."""
        keys = ("frames", "segment", "size", "low_size", "crop_scale", "smooth", "low_alignment")
        return {k: getattr(self, k) for k in keys}


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
    warnings: list[str] = field(default_factory=list)  # prepared, but likely not what was meant (on stderr)
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
