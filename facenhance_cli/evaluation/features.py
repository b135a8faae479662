"""The networks behind the metrics, loaded once, and an on-disk cache of their per-video features."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facenhance_cli.errors import MissingWeightsError
from facenhance_cli.evaluation.options import NEEDS_GT_LANDMARKS, EvalOptions
from facenhance_cli.fileio import atomic_path

if TYPE_CHECKING:  # heavy modules (torch, dlib) are imported where they are used
    from facenhance_cli.metrics.i3d import InceptionI3d
    from facenhance_cli.metrics.identity import DlibFaces


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


class Networks:
    """The networks a run needs, loaded once; a missing weight drops its metrics with a warning."""

    def __init__(self, options: EvalOptions, warnings: list[str]) -> None:
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
                warnings.append(f"skipped {', '.join(sorted(dropped & metrics))}: {exc}")
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
                warnings.append(f"skipped fvd: {exc}")
                metrics.discard("fvd")
        self.metrics = tuple(m for m in options.metrics if m in metrics)

    def get_i3d(self) -> InceptionI3d:
        """The I3D, loaded on first use (a fully cached rerun never loads it)."""
        if self.i3d is None:
            from facenhance_cli.metrics.i3d import load_i3d

            assert self._i3d_path is not None
            self.i3d = load_i3d(self._i3d_path, self._device)
        return self.i3d


class Features:
    """One run's per-video features through the cache: face embeddings, 68 landmarks and I3D logits.

    I3D clips are queued and run `options.i3d_batch` at a time; `i3d[method]` collects each set's features
    for the FVD ("gt" is the reference set). A clip too short for the I3D turns FVD off with a warning.
    """

    def __init__(self, options: EvalOptions, methods: tuple[str, ...], warnings: list[str]) -> None:
        self.options = options
        self.warnings = warnings
        self.nets = Networks(options, warnings)
        self.cache = FeatureCache(options.cache_dir)
        sha = self.nets.dlib_sha256
        self._emb_settings = f"{sha.get('dlib_embedding')}|{sha.get('dlib_landmarks5')}|v1"
        self._lmk_settings = f"{sha.get('dlib_landmarks68')}|v1"
        self._i3d_settings = f"{self.nets.i3d_sha256}|bilinear224|[-1,1]|logits400|v1"
        self.fvd_ok = "fvd" in self.nets.metrics
        self.i3d: dict[str, list[np.ndarray]] = {m: [] for m in (*methods, "gt")}
        self._pending: list[tuple[str, str, np.ndarray]] = []  # (method, cache key, clip)

    def embeddings(self, frames: np.ndarray) -> tuple[np.ndarray, int]:
        """(F, 128) dlib embeddings of (F, H, W, 3) uint8 frames, and how many frames had no face."""
        key = self.cache.key("emb", frames, self._emb_settings)
        hit = self.cache.load("emb", key)
        if hit is not None:
            return hit[:, :128], int(hit[0, 128])
        assert self.nets.faces is not None  # built whenever an embedding metric survived the weights check
        emb, missing = self.nets.faces.embeddings(frames)
        stored = np.concatenate([emb, np.full((len(emb), 1), missing, np.float64)], axis=1)
        self.cache.save("emb", key, stored)
        return emb, missing

    def landmarks(self, frames: np.ndarray) -> tuple[np.ndarray, int]:
        """(F, 68, 2) dlib landmarks of (F, H, W, 3) uint8 frames, and how many frames had no face."""
        key = self.cache.key("lmk68", frames, self._lmk_settings)
        hit = self.cache.load("lmk68", key)
        if hit is not None:
            return hit[:, :68], int(hit[0, 68, 0])
        assert self.nets.faces is not None
        lmk, missing = self.nets.faces.landmarks68(frames)
        extra = np.full((len(lmk), 1, 2), missing, np.float64)
        self.cache.save("lmk68", key, np.concatenate([lmk, extra], axis=1))
        return lmk, missing

    def clear_faces(self) -> None:
        """Forget the face detections of the clip just scored (the next clip is another video)."""
        if self.nets.faces is not None:
            self.nets.faces.clear()

    def queue_i3d(self, method: str, frames: np.ndarray, name: str) -> None:
        """Queue the first fvd_frames frames of video `name` for the I3D (a cached clip is taken at once)."""
        from facenhance_cli.metrics.i3d import I3D_MIN_FRAMES

        if not self.fvd_ok:
            return
        clip = np.ascontiguousarray(frames[: self.options.fvd_frames])
        if len(clip) < I3D_MIN_FRAMES:
            self.warnings.append(
                f"skipped fvd: '{name}' has {len(clip)} frames; the I3D needs at least {I3D_MIN_FRAMES}"
            )
            self.fvd_ok = False
            return
        key = self.cache.key("i3d", clip, self._i3d_settings)
        hit = self.cache.load("i3d", key)
        if hit is not None:
            self.i3d[method].append(hit)
        else:
            self._pending.append((method, key, clip))
            self.flush_i3d()

    def flush_i3d(self, force: bool = False) -> None:
        """Run the queued clips through the I3D, a full batch at a time (with `force`, the rest too)."""
        from facenhance_cli.metrics.i3d import i3d_logits

        batch_size = self.options.i3d_batch
        while self._pending and (force or len(self._pending) >= batch_size):
            batch = self._pending[:batch_size]
            del self._pending[:batch_size]
            # Clips in one forward pass must share a length; short videos go on their own.
            groups: dict[int, list[tuple[str, str, np.ndarray]]] = {}
            for item in batch:
                groups.setdefault(len(item[2]), []).append(item)
            for group in groups.values():
                clips = [clip for _, _, clip in group]
                logits = i3d_logits(self.nets.get_i3d(), clips, batch_size=batch_size)
                for (method, key, _), feat in zip(group, logits, strict=True):
                    self.cache.save("i3d", key, feat)
                    self.i3d[method].append(feat)
