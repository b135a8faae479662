"""Training data from `prepare`'s output: (low frame n, identity image, high frame n, high frame n-1) samples.

Layout read: DATA/manifest.jsonl (one JSON object per clip: clip_id, split, status, ...) and, per clip,
DATA/<clip_id>/{high.mkv, low.mkv, identity.png}. The previous frame of n = 0 is the identity image, which
is what inference conditions frame 0 on (Algorithm 3).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facenhance_cli.conditioning import FrameImages, frame_images, needs_paste_matrix
from facenhance_cli.config import FacenhanceConfig
from facenhance_cli.errors import InputError, UsageError
from facenhance_cli.fileio import read_jsonl
from facenhance_cli.motion import MOTION_FILE

log = logging.getLogger(__name__)

FAILED_STATUSES = {"failed", "skipped", "error"}
IN_MEMORY_LIMIT_BYTES = 6 * 1024**3  # above this, clips are decoded on demand with an LRU cache


@dataclass(frozen=True)
class ClipEntry:
    """One prepared clip as listed in manifest.jsonl."""

    clip_id: str
    folder: Path
    split: str
    subject: str
    n_frames: int


def read_manifest(data_dir: Path) -> list[ClipEntry]:
    """Usable clips of a prepared folder (failed ones and ones with missing files are left out, with a warning)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"data folder not found: {data_dir}")
    manifest = data_dir / "manifest.jsonl"
    if not manifest.is_file():
        raise InputError(
            f"{data_dir} has no manifest.jsonl: run `facenhance prepare VIDEOS -o {data_dir}` first"
        )
    entries = []
    for row in read_jsonl(manifest, strict=True):
        if row.get("status") in FAILED_STATUSES:
            continue
        folder = data_dir / row["clip_id"]
        missing = [name for name in ("high.mkv", "low.mkv", "identity.png") if not (folder / name).is_file()]
        if missing:
            log.warning("skipping clip %s: missing %s", row["clip_id"], ", ".join(missing))
            continue
        entries.append(
            ClipEntry(
                clip_id=row["clip_id"],
                folder=folder,
                split=row.get("split", "train"),
                subject=str(row.get("subject", row["clip_id"])),
                n_frames=int(row.get("n_frames", 0)),
            )
        )
    if not entries:
        raise InputError(f"no usable prepared clips in {data_dir}")
    return entries


def expected_frames(entry: ClipEntry) -> int:
    """Frames a prepared clip should decode to: its meta.json's n_frames, else the manifest's (0: unknown)."""
    try:
        n = json.loads((entry.folder / "meta.json").read_text()).get("n_frames", entry.n_frames)
    except (OSError, ValueError, AttributeError):
        n = entry.n_frames
    return n if isinstance(n, int) and n > 0 else 0


@dataclass(frozen=True)
class TrainingSample:
    """One training pair: the target high frame (S, S, 3) uint8 and what the denoiser sees for it."""

    target: np.ndarray
    inputs: FrameImages


@dataclass
class Clip:
    """Decoded clip arrays, uint8 RGB: high (F,S,S,3), low (F,L,L,3), identity (S,S,3)."""

    high: np.ndarray
    low: np.ndarray
    identity: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.high.nbytes + self.low.nbytes + self.identity.nbytes


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if images.shape[-2] == size and images.shape[-3] == size:
        return images
    flat = images.reshape(-1, *images.shape[-3:])
    out = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in flat])
    return out.reshape(*images.shape[:-3], size, size, 3)


def load_clip(entry: ClipEntry, image_size: int, low_size: int) -> Clip:
    """Decode a prepared clip; frames are resized when the model's sizes differ from the data's."""
    from facenhance_cli.video import read_image, read_video

    high, _ = read_video(entry.folder / "high.mkv")
    low, _ = read_video(entry.folder / "low.mkv")
    identity = read_image(entry.folder / "identity.png")
    n = min(len(high), len(low))
    if n == 0:
        raise InputError(f"clip {entry.clip_id} has no frames")
    return Clip(_resize(high[:n], image_size), _resize(low[:n], low_size), _resize(identity, image_size))


class FrameDataset:
    """All (clip, frame) pairs of some clips as training samples for `config`'s model; clips are held in
    memory when small, else decoded on demand."""

    def __init__(
        self,
        entries: Sequence[ClipEntry],
        config: FacenhanceConfig,
        in_memory: bool | None = None,
        cache_clips: int = 16,
        workers: int = 1,
    ) -> None:
        self.entries = list(entries)
        self.config = config  # what a sample holds: conditioning.frame_images makes the fields it uses
        self._alignments: dict[int, np.ndarray | None] = {}  # clip index -> (F, 2, 3), None if no landmarks
        self._paste_matrices: dict[int, np.ndarray] = {}  # clip index -> low px to identity px
        self.image_size = config.unet.image_size
        self.low_size = config.encoder.low_size
        est = sum(max(e.n_frames, 1) * (self.image_size**2 + self.low_size**2) * 3 for e in self.entries)
        self.in_memory = est <= IN_MEMORY_LIMIT_BYTES if in_memory is None else in_memory
        self._cache: OrderedDict[int, Clip] = OrderedDict()
        self._cache_size = cache_clips
        self._cache_lock = threading.Lock()
        self.index: list[tuple[int, int]] = []  # (clip index, frame index)
        kept_entries: list[ClipEntry] = []
        for entry, loaded in zip(self.entries, self._decode_all(workers), strict=True):
            if isinstance(loaded, InputError):
                log.warning("skipping unreadable clip %s: %s", entry.clip_id, loaded)
                continue
            ci = len(kept_entries)
            kept_entries.append(entry)
            self.index.extend((ci, n) for n in range(loaded))
        self.entries = kept_entries
        if not self.index:
            raise InputError("no readable clips left")

    def _decode_all(self, workers: int) -> list[int | InputError]:
        """Decode every clip once (in `workers` threads: PyAV releases the GIL); frame counts or errors."""
        from concurrent.futures import ThreadPoolExecutor

        def decode(entry: ClipEntry) -> Clip | int | InputError:
            try:
                if self.in_memory:
                    return load_clip(entry, self.image_size, self.low_size)
                from facenhance_cli.video import count_frames

                # Streaming: count frames without keeping them; clips are decoded again on demand.
                n = min(count_frames(entry.folder / "high.mkv"), count_frames(entry.folder / "low.mkv"))
                return n if n > 0 else InputError(f"clip {entry.clip_id} has no frames")
            except InputError as exc:
                return exc

        with ThreadPoolExecutor(max(1, workers)) as pool:
            loaded = list(pool.map(decode, self.entries))
        counts: list[int | InputError] = []
        for entry, item in zip(self.entries, loaded, strict=True):
            if isinstance(item, Clip):
                self._cache[len(self._cache)] = item  # keys follow the kept-clip order of __init__
                counts.append(len(item.high))
            else:
                counts.append(item)
            if isinstance(counts[-1], int) and counts[-1] < (expected := expected_frames(entry)):
                log.warning(
                    "clip %s decodes %d of the %d frames its meta.json lists (truncated high.mkv "
                    "or low.mkv?): training on those %d; rerun `prepare --overwrite` on it",
                    entry.clip_id, counts[-1], expected, counts[-1],
                )  # fmt: skip
        return counts

    def _load(self, ci: int, entry: ClipEntry) -> Clip:
        clip = load_clip(entry, self.image_size, self.low_size)
        self._cache[ci] = clip
        return clip

    def clip(self, ci: int) -> Clip:
        """Arrays of clip `ci` (from memory or decoded, LRU-cached; safe from several sampling threads)."""
        with self._cache_lock:
            if ci in self._cache:
                self._cache.move_to_end(ci)
                return self._cache[ci]
            clip = self._load(ci, self.entries[ci])
            while not self.in_memory and len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return clip

    def __len__(self) -> int:
        return len(self.index)

    def paste_matrix(self, ci: int) -> np.ndarray:
        """(2, 3) low px -> identity px of clip `ci`, registered from its first low frame as enhance does."""
        if ci not in self._paste_matrices:
            from facenhance_cli.pasting import locate_low_face

            clip = self.clip(ci)
            self._paste_matrices[ci] = locate_low_face(clip.identity, clip.low[0])[0]
        return self._paste_matrices[ci]

    def alignment(self, ci: int) -> np.ndarray | None:
        """(F, 2, 3) per-frame similarities taking clip `ci`'s high frame n onto frame 0 (= its identity
        image): fitted on the rigid landmarks of meta.json, or with `training.target_motion = registered`
        the inverse of the head motion `prepare` stored (motion.csv) where there is one; None without
        either."""
        if ci not in self._alignments:
            folder = self.entries[ci].folder
            stored = None
            if self.config.training.target_motion == "registered":
                stored = stored_alignments(folder / MOTION_FILE, self.image_size)
            self._alignments[ci] = (
                stored if stored is not None else head_alignments(folder / "meta.json", self.image_size)
            )
        return self._alignments[ci]

    def _high(self, ci: int, n: int) -> np.ndarray:
        """(S, S, 3) uint8 high frame n of clip `ci`, moved onto frame 0's head pose with align_targets."""
        frame = self.clip(ci).high[n]
        transforms = self.alignment(ci) if self.config.training.align_targets else None
        if transforms is None or n >= len(transforms) or np.array_equal(transforms[n], np.eye(2, 3)):
            return frame
        import cv2

        size = frame.shape[0]
        # Lanczos: a bilinear warp keeps 0.82 of a target's face detail (mean |Laplacian|, 40 training
        # frames), teaching the network to blur what the identity image has sharp; Lanczos keeps 0.99.
        return cv2.warpAffine(
            frame, transforms[n], (size, size), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE
        )

    def sample(self, position: int, flip: bool, gain: np.ndarray | None = None) -> TrainingSample:
        """The target high frame n and its conditioning images; the previous frame of frame 0 is the identity
        image. `gain` (3,) scales every image's channels alike; `flip` mirrors them all."""
        ci, n = self.index[position]
        clip = self.clip(ci)
        images = [
            clip.low[n],
            clip.identity,
            self._high(ci, n),
            self._high(ci, n - 1) if n > 0 else clip.identity,
        ]
        if gain is not None:  # black stays black: the low frame's background is still background
            images = [np.clip(image * gain + 0.5, 0, 255).astype(np.uint8) for image in images]
        low, identity, target, prev = images
        matrix = self.paste_matrix(ci) if needs_paste_matrix(self.config) else None
        inputs = frame_images(self.config, identity, low, matrix, prev_frame=prev)
        if flip:
            return TrainingSample(target[:, ::-1], inputs.flipped())
        return TrainingSample(target, inputs)


def stored_alignments(motion_path: Path, size: int) -> np.ndarray | None:
    """(F, 2, 3) the inverse of each frame's head move in `prepare`'s motion.csv at `size` px (a still frame:
    exactly the identity), None when the file is missing or unreadable.

    The motion is the rigid landmarks' fit refined by registering the head and kept only where it lowers
    the head's error (`motion.estimate_motion`), the motion `eval --align-truth` aligns the truth with."""
    import cv2

    from facenhance_cli.motion import is_still, read_motion

    try:
        motion = read_motion(motion_path)
    except UsageError:
        return None
    moves = [motion.matrix(n, size) for n in range(len(motion))]
    return np.stack(
        [np.eye(2, 3) if is_still(move, size) else cv2.invertAffineTransform(move) for move in moves]
    )


def head_alignments(meta_path: Path, size: int) -> np.ndarray | None:
    """(F, 2, 3) similarities (Umeyama fit of the rigid landmarks) taking each high frame's head onto frame
    0's, at `size` px, from `prepare`'s meta.json; None when the file or its landmarks are missing.

    Ours, for training only: the aligned low frames carry no head position, so a model can only leave the
    head where the identity image (frame 0) has it. A target whose head has moved since frame 0 teaches it
    to blur (the average over positions it cannot know); the moved-back target teaches the expression.
    """
    from facenhance_cli.faces import RIGID_POINTS
    from facenhance_cli.metrics.landmarks import fit_similarity
    from facenhance_cli.prepare.clip import stored_high_landmarks

    landmarks = stored_high_landmarks(meta_path, size)
    if landmarks is None:
        return None
    rigid = list(RIGID_POINTS)
    return np.stack([fit_similarity(points[rigid], landmarks[0][rigid]) for points in landmarks])


def to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 (H,W,3) images -> float32 (B,3,H,W) in [-1, 1]."""
    batch = np.stack([np.ascontiguousarray(im) for im in images])
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (B,3,H,W) in [-1, 1] -> uint8 (B,H,W,3)."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@functools.lru_cache(maxsize=4)
def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of one epoch: a permutation that depends only on (seed, epoch), so resumes replay it."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_positions(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Dataset positions of the global batch at `step`: consecutive slices of the epoch permutations."""
    if batch_size > n:
        raise UsageError(f"batch size {batch_size} is larger than the {n} training frames")
    start = step * batch_size
    positions = []
    for k in range(start, start + batch_size):
        epoch, offset = divmod(k, n)
        positions.append(int(epoch_order(n, seed, epoch)[offset]))
    return positions
