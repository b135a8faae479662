"""`facenhance eval` pipeline: pair generated and ground-truth videos, run the metrics and baselines, report.

Inputs are uint8 RGB videos (any container, frame folders, or `prepare` clip folders holding high.mkv,
low.mkv and identity.png). Every metric is computed per video (mean over frames), then mean and std
over videos; FVD is computed over the whole set. The same metrics run on trivial baselines (the
identity image repeated, the low frames upscaled bicubically) so every report shows what doing
nothing scores (../shared/METHOD.md, "Metrics").
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import math
import os
import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facenhance_cli.errors import InputError, MissingWeightsError, UsageError
from facenhance_cli.fileio import atomic_path, write_json, write_text
from facenhance_cli.video import VIDEO_SUFFIXES

if TYPE_CHECKING:  # heavy modules (torch, dlib) are imported where they are used
    from facenhance_cli.metrics.i3d import InceptionI3d
    from facenhance_cli.metrics.identity import DlibFaces

METRICS = ("psnr", "ssim", "acd", "acd_i", "fvd", "lmk", "id_match", "sharpness")
NEEDS_GT_LANDMARKS = {"lmk", "sharpness"}  # scored with the ground truth's 68 dlib landmarks
BASELINES = ("identity", "bicubic", "paste")
METHOD = "method"  # the generated videos; baselines are reported beside it under their own names
# Report keys, in a stable order: a video-level value for each (FVD only exists over the set).
VIDEO_KEYS = (
    "psnr",
    "ssim",
    "acd",
    "acd_i",
    "lmk_nme",
    "lmk_nme_mouth",
    "lmk_nme_eyes",
    "expr_nme",
    "id_match",
    "sharpness",
)
SUMMARY_KEYS = (
    "psnr",
    "ssim",
    "acd",
    "acd_i",
    "fvd",
    "lmk_nme",
    "lmk_nme_mouth",
    "lmk_nme_eyes",
    "expr_nme",
    "id_match",
    "sharpness",
)
CLIP_FOLDER_FILES = {"gen": "high.mkv", "gt": "high.mkv", "low": "low.mkv"}
IDENTITY_FILE = "identity.png"
PSNR_INF_NOTE = (
    'infinite values (PSNR of identical frames) are written as the string "inf"; missing ones as null'
)
FEW_VIDEOS_NOTE = "FVD over {n} videos is strongly biased (its 400-d covariance has rank < {n}); use >= {m}"


@dataclass(frozen=True)
class EvalPair:
    """One clip to score: generated video, ground truth, and optionally its identity image and low video."""

    name: str
    gen: Path
    gt: Path
    identity: Path | None = None
    low: Path | None = None


@dataclass
class EvalOptions:
    """What to compute and how."""

    metrics: tuple[str, ...] = METRICS
    baselines: tuple[str, ...] = BASELINES
    fvd_frames: int = 16  # the FVD convention (Unterthiner et al. 2018): 16-frame clips
    i3d_batch: int = 4  # clips per I3D forward pass
    device: str = "cpu"
    cache_dir: Path | None = None  # None: no feature cache
    weights_dir: Path | None = None
    sheet_videos: int = 4
    sheet_frames: int = 4


@dataclass
class EvalResult:
    """The JSON-ready report (see `report_keys`) and the frames kept for the contact sheet."""

    report: dict[str, Any]
    sheet: list[tuple[str, dict[str, np.ndarray]]] = field(default_factory=list)

    @property
    def notes(self) -> list[str]:
        """Skipped metrics, missing weights and warnings, one line each."""
        return self.report["notes"]


# ----------------------------------------------------------------------------------------------------
# Option parsing


def parse_names(text: str | None, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """'a,b' -> ('a', 'b') checked against `allowed`; 'all' -> allowed; 'none' or '' -> ()."""
    if text is None or text.strip().lower() == "all":
        return allowed
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names in ([], ["none"]):
        return ()
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise UsageError(f"unknown {what} {', '.join(unknown)}: choose from {', '.join(allowed)}")
    return tuple(n for n in allowed if n in names)


# ----------------------------------------------------------------------------------------------------
# Pairing


def _is_clip_folder(path: Path) -> bool:
    return path.is_dir() and (path / "high.mkv").is_file()


def _is_frame_folder(path: Path) -> bool:
    from facenhance_cli.video import IMAGE_SUFFIXES

    return path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())


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
        elif _is_clip_folder(path):
            add(path.name, path / CLIP_FOLDER_FILES[role])
        elif _is_frame_folder(path):
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
                elif _is_frame_folder(child):
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
    generated counterpart are left out with a note (evaluating a test split against a whole dataset).
    """
    gen_map, gt_map = expand_videos(gen, "gen"), expand_videos(gt, "gt")
    notes: list[str] = []
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
            notes.append(f"{extra} ground-truth videos have no generated counterpart and are not scored")

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
    return pairs, notes


def read_pairs_csv(path: str | os.PathLike[str]) -> list[EvalPair]:
    """Pairs from a CSV with columns gen, gt, optionally identity, low, name (paths relative to the CSV)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"pairs file not found: {path}")
    with open(path, newline="") as f:
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


# ----------------------------------------------------------------------------------------------------
# Feature cache


class FeatureCache:
    """On-disk cache of per-video features (.npy), keyed by a hash of the decoded frames and the settings.

    Keying on pixels rather than on file name and mtime means a re-encoded or renamed file with the same
    frames hits, an edited one misses, and baselines (which have no file) are cached too.
    """

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(kind: str, frames: np.ndarray, settings: str) -> str:
        """sha256 of kind, settings, shape and pixels."""
        digest = hashlib.sha256(f"{kind}|{settings}|{frames.shape}|{frames.dtype}".encode())
        digest.update(np.ascontiguousarray(frames).data)
        return digest.hexdigest()

    def _path(self, kind: str, key: str) -> Path:
        assert self.root is not None
        return self.root / kind / key[:2] / f"{key}.npy"

    def load(self, kind: str, key: str) -> np.ndarray | None:
        """The cached array, or None."""
        if self.root is None:
            return None
        path = self._path(kind, key)
        try:
            value = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def save(self, kind: str, key: str, value: np.ndarray) -> None:
        """Store an array atomically; a cache that cannot be written is not an error."""
        if self.root is None:
            return
        try:
            with atomic_path(self._path(kind, key)) as tmp, open(tmp, "wb") as f:
                np.save(f, value, allow_pickle=False)
        except OSError:
            pass


def default_cache_dir() -> Path:
    """platformdirs user cache dir for facenhance eval features."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("facenhance")) / "eval-features"


# ----------------------------------------------------------------------------------------------------
# Baselines


def identity_baseline(identity: np.ndarray, n_frames: int, size: tuple[int, int]) -> np.ndarray:
    """The (H, W, 3) identity image resized to `size` (h, w) and repeated: (F, h, w, 3) uint8."""
    return np.repeat(_resize(identity, size)[None], n_frames, axis=0)


def paste_baseline(identity: np.ndarray, low: np.ndarray) -> np.ndarray:
    """(F, S, S, 3) uint8: each (F, L, L, 3) low frame's face pasted on the (S, S, 3) identity image."""
    from facenhance_cli.pasting import locate_low_face, paste_low_face

    matrix, _ = locate_low_face(identity, low[0])
    return np.stack([paste_low_face(identity, frame, matrix) for frame in low])


def bicubic_baseline(low: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(F, h0, w0, 3) uint8 low frames upscaled bicubically to `size` (h, w): (F, h, w, 3) uint8."""
    import cv2

    return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_CUBIC) for f in low])


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if image.shape[:2] == size:
        return image
    shrink = image.shape[0] > size[0]
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


# ----------------------------------------------------------------------------------------------------
# Evaluation


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    if any(math.isinf(v) for v in vals):
        return float("inf") if all(v > 0 for v in vals if math.isinf(v)) else float("nan")
    return float(np.mean(vals))


def _std(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    if not vals or any(math.isinf(v) for v in vals):
        return None
    return float(np.std(vals))


def _summarize(rows: list[dict[str, Any]], fvd: float | None) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key in SUMMARY_KEYS:
        summary[key] = fvd if key == "fvd" else _mean([r.get(key) for r in rows])
    summary["std"] = {key: _std([r.get(key) for r in rows]) for key in VIDEO_KEYS}
    summary["n_videos"] = len(rows)
    summary["no_face_frames"] = int(sum(r.get("no_face_frames") or 0 for r in rows))
    summary["identical_frames"] = int(sum(r.get("identical_frames") or 0 for r in rows))
    return summary


def _versions() -> dict[str, str]:
    import dlib
    import torch

    from facenhance_cli import __version__

    return {
        "facenhance": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "dlib": str(getattr(dlib, "__version__", "unknown")),
    }


class _Nets:
    """The networks a run needs, loaded once; a missing weight drops its metrics with a note."""

    def __init__(self, options: EvalOptions, notes: list[str]) -> None:
        from facenhance_cli.weights import find_weight, sha256_of

        metrics = set(options.metrics)
        self.faces: DlibFaces | None = None
        self.i3d: InceptionI3d | None = None
        self.i3d_sha256: str | None = None
        self.dlib_sha256: dict[str, str] = {}
        need_emb = bool(metrics & {"acd", "acd_i", "id_match"})
        need_lmk = bool(metrics & NEEDS_GT_LANDMARKS)
        paths: dict[str, Path | None] = {
            "dlib_embedding": None,
            "dlib_landmarks5": None,
            "dlib_landmarks68": None,
        }
        for name, needed, dropped in (
            ("dlib_embedding", need_emb, {"acd", "acd_i", "id_match"}),
            ("dlib_landmarks5", need_emb, {"acd", "acd_i", "id_match"}),
            ("dlib_landmarks68", need_lmk, NEEDS_GT_LANDMARKS),
        ):
            if not needed:
                continue
            try:
                paths[name] = find_weight(name, options.weights_dir)
            except MissingWeightsError as exc:
                notes.append(f"skipped {', '.join(sorted(dropped & metrics))}: {exc}")
                metrics -= dropped
        if metrics & ({"acd", "acd_i", "id_match"} | NEEDS_GT_LANDMARKS):
            from facenhance_cli.metrics.identity import DlibFaces

            self.faces = DlibFaces(
                paths["dlib_embedding"], paths["dlib_landmarks5"], paths["dlib_landmarks68"]
            )
            # Cache keys name the exact dlib files (size + name: hashing 120 MB each run would cost more
            # than a cache hit saves).
            self.dlib_sha256 = {k: f"{p.name}:{p.stat().st_size}" for k, p in paths.items() if p is not None}
        self._i3d_path: Path | None = None
        self._device = options.device
        if "fvd" in metrics:
            try:
                self._i3d_path = find_weight("i3d", options.weights_dir)
                # The sha256 names the exact weights in the report and in the cache keys.
                self.i3d_sha256 = sha256_of(self._i3d_path)
            except MissingWeightsError as exc:
                notes.append(f"skipped fvd: {exc}")
                metrics.discard("fvd")
        self.metrics = tuple(m for m in options.metrics if m in metrics)

    def get_i3d(self) -> Any:
        """The I3D, loaded on first use (a fully cached rerun never loads it)."""
        if self.i3d is None:
            from facenhance_cli.metrics.i3d import load_i3d

            assert self._i3d_path is not None
            self.i3d = load_i3d(self._i3d_path, self._device)
        return self.i3d


def _load_video(path: Path, pair: EvalPair, role: str) -> np.ndarray:
    from facenhance_cli.video import read_video

    try:
        return read_video(path)[0]
    except InputError as exc:
        raise InputError(f"pair '{pair.name}': {role}: {exc}") from None


def _check_same(pair: EvalPair, what: str, a: np.ndarray, gt: np.ndarray, check_size: bool = True) -> None:
    if len(a) != len(gt):
        raise InputError(f"pair '{pair.name}': {what} has {len(a)} frames but ground truth has {len(gt)}")
    if check_size and a.shape[1:3] != gt.shape[1:3]:
        raise InputError(
            f"pair '{pair.name}': {what} is {a.shape[2]}x{a.shape[1]} "
            f"but ground truth is {gt.shape[2]}x{gt.shape[1]}"
        )


def evaluate(
    pairs: list[EvalPair],
    options: EvalOptions | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> EvalResult:
    """Score every pair and baseline -> report (SUMMARY_KEYS, std, per_video, baselines, settings, notes)."""
    from facenhance_cli.metrics.fidelity import psnr_frames, ssim_frames
    from facenhance_cli.metrics.fvd import FVD_MIN_VIDEOS, fvd_from_features
    from facenhance_cli.metrics.i3d import I3D_MIN_FRAMES, i3d_logits
    from facenhance_cli.metrics.identity import (
        EMBEDDING_NETWORK,
        SAME_PERSON_THRESHOLD,
        acd,
        acd_i,
        id_match,
    )
    from facenhance_cli.metrics.landmarks import LANDMARK_NETWORK, expression_nme, landmark_nme
    from facenhance_cli.metrics.sharpness import sharpness_ratio
    from facenhance_cli.video import read_image

    options = options or EvalOptions()
    if not pairs:
        raise InputError("nothing to evaluate: no video pairs")
    if options.fvd_frames < I3D_MIN_FRAMES:
        raise UsageError(
            f"--fvd-frames must be at least {I3D_MIN_FRAMES} (the I3D's temporal pooling needs them)"
        )
    notes: list[str] = []
    nets = _Nets(options, notes)
    metrics = set(nets.metrics)
    cache = FeatureCache(options.cache_dir)
    faces = nets.faces
    methods = (METHOD, *options.baselines)
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    i3d_feats: dict[str, list[np.ndarray]] = {m: [] for m in (*methods, "gt")}
    i3d_pending: list[tuple[str, str, np.ndarray]] = []  # (method, cache key, clip)
    fvd_ok = "fvd" in metrics
    total_frames = 0
    frame_counts: set[int] = set()
    sheet: list[tuple[str, dict[str, np.ndarray]]] = []
    emb_settings = f"{nets.dlib_sha256.get('dlib_embedding')}|{nets.dlib_sha256.get('dlib_landmarks5')}|v1"
    lmk_settings = f"{nets.dlib_sha256.get('dlib_landmarks68')}|v1"
    i3d_settings = f"{nets.i3d_sha256}|bilinear224|[-1,1]|logits400|v1"
    skipped: dict[str, set[str]] = {}

    def note_once(key: str, name: str) -> None:
        skipped.setdefault(key, set()).add(name)

    def embeddings(frames: np.ndarray) -> tuple[np.ndarray, int]:
        key = cache.key("emb", frames, emb_settings)
        hit = cache.load("emb", key)
        if hit is not None:
            return hit[:, :128], int(hit[0, 128])
        assert faces is not None  # built whenever an embedding metric survived the weights check
        emb, missing = faces.embeddings(frames)
        cache.save("emb", key, np.concatenate([emb, np.full((len(emb), 1), missing, np.float64)], axis=1))
        return emb, missing

    def landmarks(frames: np.ndarray) -> tuple[np.ndarray, int]:
        key = cache.key("lmk68", frames, lmk_settings)
        hit = cache.load("lmk68", key)
        if hit is not None:
            return hit[:, :68], int(hit[0, 68, 0])
        assert faces is not None
        lmk, missing = faces.landmarks68(frames)
        extra = np.full((len(lmk), 1, 2), missing, np.float64)
        cache.save("lmk68", key, np.concatenate([lmk, extra], axis=1))
        return lmk, missing

    def flush_i3d(force: bool = False) -> None:
        while i3d_pending and (force or len(i3d_pending) >= options.i3d_batch):
            batch = i3d_pending[: options.i3d_batch]
            del i3d_pending[: options.i3d_batch]
            # Clips in one forward pass must share a length; short videos go on their own.
            groups: dict[int, list[tuple[str, str, np.ndarray]]] = {}
            for item in batch:
                groups.setdefault(len(item[2]), []).append(item)
            for group in groups.values():
                logits = i3d_logits(nets.get_i3d(), [c for _, _, c in group], batch_size=options.i3d_batch)
                for (method, key, _), feat in zip(group, logits, strict=True):
                    cache.save("i3d", key, feat)
                    i3d_feats[method].append(feat)

    def queue_i3d(method: str, frames: np.ndarray) -> None:
        nonlocal fvd_ok
        if not fvd_ok:
            return
        clip = np.ascontiguousarray(frames[: options.fvd_frames])
        if len(clip) < I3D_MIN_FRAMES:
            notes.append(
                f"skipped fvd: '{pair.name}' has {len(clip)} frames; the I3D needs at least {I3D_MIN_FRAMES}"
            )
            fvd_ok = False
            return
        key = cache.key("i3d", clip, i3d_settings)
        hit = cache.load("i3d", key)
        if hit is not None:
            i3d_feats[method].append(hit)
        else:
            i3d_pending.append((method, key, clip))
            flush_i3d()

    for index, pair in enumerate(pairs):
        if progress is not None:
            progress(index, len(pairs), pair.name)
        gen = _load_video(pair.gen, pair, "generated video")
        gt = _load_video(pair.gt, pair, "ground truth")
        _check_same(pair, f"generated video ({pair.gen})", gen, gt)
        total_frames += len(gt)
        frame_counts.add(len(gt))
        size = gt.shape[1:3]
        identity = read_image(pair.identity) if pair.identity is not None else None
        identity = _resize(identity, size) if identity is not None else None
        low = _load_video(pair.low, pair, "low video") if pair.low is not None else None
        if low is not None:
            _check_same(pair, f"low video ({pair.low})", low, gt, check_size=False)
        videos: dict[str, np.ndarray] = {METHOD: gen}
        for baseline in options.baselines:
            if baseline == "identity" and identity is not None:
                videos["identity"] = identity_baseline(identity, len(gt), size)
            elif baseline == "bicubic" and low is not None:
                videos["bicubic"] = bicubic_baseline(low, size)
            elif baseline == "paste" and low is not None and identity is not None:
                videos["paste"] = paste_baseline(identity, low)
            else:
                needs = {"identity": "an identity image", "bicubic": "a low video"}
                note_once(
                    f"baseline {baseline} skipped: it needs {needs.get(baseline, 'a low video and an identity image')}",
                    pair.name,
                )

        gt_lmk = landmarks(gt)[0] if metrics & NEEDS_GT_LANDMARKS else None
        id_emb = None
        if identity is not None and metrics & {"acd_i", "id_match"}:
            id_vec, id_missing = embeddings(identity[None])
            id_emb = id_vec[0]
            if id_missing:
                note_once("no face found in the identity image (whole image used)", pair.name)
        for method, frames in videos.items():
            row: dict[str, Any] = {"name": pair.name, "frames": len(frames)}
            row.update({k: None for k in VIDEO_KEYS})
            no_face = 0
            if "psnr" in metrics:
                # Identical frames (PSNR inf) are left out of the video's mean and counted: prepare's
                # identity.png is the clip's first frame, so the identity baseline always has one, and
                # a single inf would make the whole video inf. A fully identical video stays inf.
                values = psnr_frames(frames, gt)
                finite = values[np.isfinite(values)]
                row["psnr"] = float(finite.mean()) if len(finite) else float("inf")
                row["identical_frames"] = int(len(values) - len(finite))
            if "ssim" in metrics:
                row["ssim"] = float(ssim_frames(frames, gt).mean())
            if metrics & {"acd", "acd_i", "id_match"}:
                emb, no_face = embeddings(frames)
                if "acd" in metrics:
                    row["acd"] = acd(emb) if len(emb) > 1 else None
                if id_emb is not None:
                    row["acd_i"] = acd_i(emb, id_emb) if "acd_i" in metrics else None
                    row["id_match"] = id_match(emb, id_emb) if "id_match" in metrics else None
                elif metrics & {"acd_i", "id_match"}:
                    note_once("acd_i and id_match skipped: no identity image", pair.name)
            if gt_lmk is not None and "sharpness" in metrics:
                row["sharpness"] = sharpness_ratio(frames, gt, gt_lmk)
            if gt_lmk is not None and "lmk" in metrics:
                lmk, lmk_missing = landmarks(frames)
                no_face = max(no_face, lmk_missing)
                nme = landmark_nme(lmk, gt_lmk)
                row["lmk_nme"], row["lmk_nme_mouth"], row["lmk_nme_eyes"] = (
                    float(nme["all"].mean()),
                    float(nme["mouth"].mean()),
                    float(nme["eyes"].mean()),
                )
                row["expr_nme"] = float(expression_nme(lmk, gt_lmk).mean())
            row["no_face_frames"] = no_face
            row.setdefault("identical_frames", 0)
            rows[method].append(row)
            queue_i3d(method, frames)
        queue_i3d("gt", gt)
        if faces is not None:
            faces.clear()
        if len(sheet) < options.sheet_videos:
            picks = np.unique(np.linspace(0, len(gt) - 1, options.sheet_frames).round().astype(int))
            sample = {}
            if low is not None:
                sample["low"] = low[picks]
            sample["output"] = gen[picks]
            sample["ground truth"] = gt[picks]
            for baseline in options.baselines:
                if baseline in videos:
                    sample[baseline] = videos[baseline][picks]
            sheet.append((pair.name, sample))
    if fvd_ok:
        flush_i3d(force=True)

    for what, names in skipped.items():
        shown = ", ".join(sorted(names)[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        notes.append(f"{what} ({len(names)} videos: {shown})")

    fvd: dict[str, float | None] = {m: None for m in methods}
    if fvd_ok:
        n = len(i3d_feats["gt"])
        if n < 2:
            notes.append(f"skipped fvd: it needs at least 2 videos per set (got {n})")
        else:
            if n < FVD_MIN_VIDEOS:
                notes.append("warning: " + FEW_VIDEOS_NOTE.format(n=n, m=FVD_MIN_VIDEOS))
            real = np.stack(i3d_feats["gt"])
            for method in methods:
                if len(i3d_feats[method]) == n:  # a baseline missing for some clips would compare other sets
                    fvd[method] = fvd_from_features(np.stack(i3d_feats[method]), real)
                elif i3d_feats[method]:
                    notes.append(
                        f"fvd of baseline {method} skipped: "
                        f"it exists for {len(i3d_feats[method])} of {n} videos"
                    )

    per_video = []
    for i, row in enumerate(rows[METHOD]):
        pair = pairs[i]
        entry = {
            "name": row["name"],
            "gen": str(pair.gen),
            "gt": str(pair.gt),
            "identity": str(pair.identity) if pair.identity else None,
            "low": str(pair.low) if pair.low else None,
            "frames": row["frames"],
            "no_face_frames": row["no_face_frames"],
            "identical_frames": row["identical_frames"],
        }
        entry.update({k: row[k] for k in VIDEO_KEYS})
        entry["baselines"] = {
            b: {k: r[k] for k in (*VIDEO_KEYS, "no_face_frames", "identical_frames")}
            for b in options.baselines
            for r in rows[b]
            if r["name"] == row["name"]
        }
        per_video.append(entry)

    report: dict[str, Any] = _summarize(rows[METHOD], fvd[METHOD])
    report["per_video"] = per_video
    report["baselines"] = {b: _summarize(rows[b], fvd[b]) for b in options.baselines}
    report["settings"] = {
        "n_videos": len(pairs),
        "frames": total_frames,
        "frames_per_video": sorted(frame_counts),
        "metrics": list(nets.metrics),
        "metrics_requested": list(options.metrics),
        "baselines": list(options.baselines),
        "baseline_definitions": {
            "identity": "the identity image (resized to the ground truth's size) repeated for every frame",
            "bicubic": "each low frame upscaled bicubically to the ground truth's size "
            "(not pasted on the identity)",
            "paste": "each low frame's face warped onto the identity image (warp registered from the first "
            "low frame, as models with unet.use_pasted_frame condition on) and feathered in",
        },
        "psnr_ssim": "per frame on RGB in [0, 255], mean per video, then mean over videos; identical frames "
        "(infinite PSNR) are left out of a video's PSNR mean and counted in identical_frames, a "
        "video identical in every frame has PSNR inf; "
        "SSIM Gaussian 11, sigma 1.5, K1 0.01, K2 0.03, valid region, channels averaged",
        "embedding_network": EMBEDDING_NETWORK if metrics & {"acd", "acd_i", "id_match"} else None,
        "embedding_pairing": "acd: consecutive output frames (n, n+1); acd_i and id_match: each output frame "
        "vs the identity image; L2 distance of 128-d embeddings",
        "no_face_fallback": "frames where dlib's detector finds no face use the whole frame as the box; "
        "counted in no_face_frames",
        "id_threshold": SAME_PERSON_THRESHOLD,
        "landmark_network": LANDMARK_NETWORK if metrics & NEEDS_GT_LANDMARKS else None,
        "sharpness": "mean |Laplacian| (4-neighbour) of the grey frame inside the convex hull of the ground "
        "truth's 68 landmarks, the video's mean over the ground truth's (1 = as sharp as the truth)",
        "lmk_nme": "mean distance of 68 landmarks, output vs ground-truth frame, over the ground truth's "
        "outer-eye-corner distance (points 36, 45); mouth 48-67, eyes 36-47",
        "expr_nme": "lmk_nme after a least-squares similarity fit of each output frame's rigid landmarks "
        "onto the ground truth's (head pose removed: the expression error)",
        "i3d_sha256": nets.i3d_sha256,
        "fvd_features": "I3D Kinetics-400 400-d logits averaged over time, first fvd_frames frames, "
        "bilinear 224x224, [-1, 1]",
        "fvd_frames": options.fvd_frames,
        "fvd_videos": len(i3d_feats["gt"]) if fvd_ok else 0,
        "fvd_reference": "ground-truth videos",
        "psnr_inf": PSNR_INF_NOTE,
        "cache_dir": str(options.cache_dir) if options.cache_dir else None,
        "cache_hits": cache.hits,
        "versions": _versions(),
    }
    report["notes"] = notes
    return EvalResult(report=report, sheet=sheet)


# ----------------------------------------------------------------------------------------------------
# Output


def jsonable(value: Any) -> Any:
    """Copy of a report with inf as the string "inf" (-inf "-inf") and NaN as null, so JSON stays valid."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(value, np.integer):
        return int(value)
    return value


def report_json_text(report: dict[str, Any]) -> str:
    """The report as indented, strictly valid JSON."""
    import json

    return json.dumps(jsonable(report), indent=2, allow_nan=False) + "\n"


def write_report_json(path: str | os.PathLike[str], report: dict[str, Any]) -> None:
    """Write the report as JSON, atomically."""
    write_json(path, jsonable(report))


CSV_COLUMNS = ("name", "method", "frames", "no_face_frames", "identical_frames", *SUMMARY_KEYS)


def report_csv_text(report: dict[str, Any]) -> str:
    """One row per video and method, then mean and std rows per method (FVD only in the mean rows)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()

    def fmt(v: Any) -> Any:
        v = jsonable(v)
        return "" if v is None else v

    summaries = {METHOD: report, **report["baselines"]}
    for video in report["per_video"]:
        for method in summaries:
            values = video if method == METHOD else video["baselines"].get(method)
            if values is None:
                continue
            row = {"name": video["name"], "method": method, "frames": video["frames"]}
            row.update({k: fmt(values.get(k)) for k in (*SUMMARY_KEYS, "no_face_frames", "identical_frames")})
            writer.writerow(row)
    for method, summary in summaries.items():
        row = {
            "name": "ALL (mean)",
            "method": method,
            "frames": report["settings"]["frames"],
            "no_face_frames": summary["no_face_frames"],
            "identical_frames": summary["identical_frames"],
        }
        row.update({k: fmt(summary.get(k)) for k in SUMMARY_KEYS})
        writer.writerow(row)
        row = {"name": "ALL (std)", "method": method}
        row.update({k: fmt(summary["std"].get(k)) for k in VIDEO_KEYS})
        writer.writerow(row)
    return buf.getvalue()


def write_report_csv(path: str | os.PathLike[str], report: dict[str, Any]) -> None:
    """Write `report_csv_text` atomically."""
    write_text(path, report_csv_text(report))


SHEET_LABEL_WIDTH = 112
SHEET_HEADER = 20


def contact_sheet(sheet: list[tuple[str, dict[str, np.ndarray]]], tile: int | None = None) -> np.ndarray:
    """Rows low | output | ground truth | baselines, a few frames each, per video -> (H, W, 3) uint8 image.

    Each video gets a SHEET_HEADER px title band, then one `tile`-px row per entry; a SHEET_LABEL_WIDTH
    px label column on the left. Low frames are upscaled with nearest neighbour so their pixels show.
    """
    import cv2

    if not sheet:
        raise InputError("no videos for the contact sheet")
    if tile is None:
        tile = max(s["ground truth"].shape[1] for _, s in sheet)
    n_cols = max(len(s["ground truth"]) for _, s in sheet)
    width = SHEET_LABEL_WIDTH + n_cols * tile
    blocks = []
    font = cv2.FONT_HERSHEY_SIMPLEX
    for name, sample in sheet:
        header = np.full((SHEET_HEADER, width, 3), 32, np.uint8)
        cv2.putText(
            header, name[: width // 8], (4, SHEET_HEADER - 6), font, 0.45, (255, 255, 255), 1, cv2.LINE_AA
        )
        blocks.append(header)
        for label, frames in sample.items():
            row = np.zeros((tile, width, 3), np.uint8)
            cv2.putText(row, label, (6, tile // 2), font, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
            for j, frame in enumerate(frames):
                interp = cv2.INTER_NEAREST if label == "low" else cv2.INTER_AREA
                if frame.shape[:2] != (tile, tile):
                    frame = cv2.resize(frame, (tile, tile), interpolation=interp)
                x0 = SHEET_LABEL_WIDTH + j * tile
                row[:, x0 : x0 + tile] = frame
            blocks.append(row)
    return np.concatenate(blocks, axis=0)


def write_contact_sheet(path: str | os.PathLike[str], result: EvalResult) -> None:
    """Write the contact sheet PNG atomically."""
    from facenhance_cli.video import write_image

    write_image(path, contact_sheet(result.sheet))
