"""Score a run: each pair's metrics on the method and the baselines, then mean, std and FVD over videos.

Every metric is computed per video (mean over frames), then mean and std over videos; FVD is computed
over the whole set (../shared/METHOD.md, "Metrics").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facenhance_cli.errors import InputError, UsageError
from facenhance_cli.evaluation.baselines import baseline_videos, resize
from facenhance_cli.evaluation.features import Features
from facenhance_cli.evaluation.options import (
    FEW_VIDEOS_NOTE,
    METHOD,
    NEEDS_GT_LANDMARKS,
    VIDEO_KEYS,
    EvalOptions,
    EvalResult,
    ScoreRow,
)
from facenhance_cli.evaluation.pairing import EvalPair
from facenhance_cli.evaluation.report import build_report
from facenhance_cli.motion import HeadMotion

IDENTITY_METRICS = {"acd", "acd_i", "id_match"}  # scored with dlib's face embeddings


def evaluate(
    pairs: list[EvalPair],
    options: EvalOptions | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> EvalResult:
    """Score every pair and baseline -> report (SUMMARY_KEYS, std, per_video, baselines, settings, notes,
    warnings) and the contact sheet's frames. `progress(i, n, name)` is called before each pair."""
    from facenhance_cli.metrics.i3d import I3D_MIN_FRAMES

    options = options or EvalOptions()
    if not pairs:
        raise InputError("nothing to evaluate: no video pairs")
    if options.fvd_frames < I3D_MIN_FRAMES:
        raise UsageError(
            f"--fvd-frames must be at least {I3D_MIN_FRAMES} (the I3D's temporal pooling needs them)"
        )
    warnings: list[str] = []
    scores = _Scores(options, Features(options, (METHOD, *options.baselines), warnings))
    for index, pair in enumerate(pairs):
        if progress is not None:
            progress(index, len(pairs), pair.name)
        scores.add(pair)
    features = scores.features
    if features.fvd_ok:
        features.flush_i3d(force=True)
    fvd = fvd_scores(features, scores.methods, warnings)
    report = build_report(pairs, scores.rows, fvd, options, features, scores.frame_counts)
    report["notes"] = scores.notes()
    report["warnings"] = warnings
    report["settings"].update(truth_settings(options, scores.alignment))
    return EvalResult(report=report, sheet=scores.sheet)


@dataclass
class _Clip:
    """One pair's decoded videos, (F, H, W, 3) uint8; the identity image at the ground truth's size."""

    gen: np.ndarray
    gt: np.ndarray
    identity: np.ndarray | None
    low: np.ndarray | None
    unseen: np.ndarray  # (F,) bool: frames whose (raw) truth is not the identity image
    valid: np.ndarray | None = None  # (F, H, W) bool: the truth's known pixels (head-aligned), None: all

    def for_fvd(self, frames: np.ndarray) -> np.ndarray:
        """`frames` as FVD sees them: with head-aligned truth, the pixels it leaves unknown take the identity
        image's, the same for every method and the truth."""
        if self.valid is None or self.identity is None:
            return frames
        return np.where(self.valid[..., None], frames, self.identity[None])


def load_clip(pair: EvalPair) -> _Clip:
    """Decode a pair's videos and identity image; frame counts (and sizes, but the low's) must agree."""
    from facenhance_cli.video import read_image

    gen = _load_video(pair.gen, pair, "generated video")
    gt = _load_video(pair.gt, pair, "ground truth")
    _check_same(pair, f"generated video ({pair.gen})", gen, gt)
    identity = resize(read_image(pair.identity), gt.shape[1:3]) if pair.identity is not None else None
    low = _load_video(pair.low, pair, "low video") if pair.low is not None else None
    if low is not None:
        _check_same(pair, f"low video ({pair.low})", low, gt, check_size=False)
    unseen = np.ones(len(gt), bool) if identity is None else (gt != identity[None]).any(axis=(1, 2, 3))
    return _Clip(gen, gt, identity, low, unseen)


class _Scores:
    """The rows of a run so far: one per video and method (the method, then each baseline)."""

    def __init__(self, options: EvalOptions, features: Features) -> None:
        self.options = options
        self.features = features
        self.metrics = set(features.nets.metrics)
        self.methods = (METHOD, *options.baselines)
        self.rows: dict[str, list[ScoreRow]] = {m: [] for m in self.methods}
        self.frame_counts: list[int] = []
        self.sheet: list[tuple[str, dict[str, np.ndarray]]] = []
        self._skipped: dict[str, set[str]] = {}  # note -> names of the videos it applies to
        self.alignment: list[
            tuple[int, int, float]
        ] = []  # head-aligned truth: (moved, frames, valid) per video

    def add(self, pair: EvalPair) -> None:
        """Score one pair's generated video and baselines; queue their I3D features; keep sheet frames."""
        clip = load_clip(pair)
        motion = self._motion(pair, clip)
        if self.options.align_truth:
            clip = self._aligned(pair, clip, motion)
        self.frame_counts.append(len(clip.gt))
        baselines, skipped = baseline_videos(self.options.baselines, clip.identity, clip.low, clip.gt, motion)
        for note in skipped:
            self._note(note, pair.name)
        videos = {METHOD: clip.gen, **baselines}
        gt_lmk = self.features.landmarks(clip.gt)[0] if self.metrics & NEEDS_GT_LANDMARKS else None
        id_emb = self._identity_embedding(clip.identity, pair.name)
        for method, frames in videos.items():
            self.rows[method].append(self._score(pair.name, frames, clip, gt_lmk, id_emb))
            self.features.queue_i3d(method, clip.for_fvd(frames), pair.name)
        self.features.queue_i3d("gt", clip.for_fvd(clip.gt), pair.name)
        self.features.clear_faces()
        if len(self.sheet) < self.options.sheet_videos:
            self.sheet.append((pair.name, self._sheet_sample(clip, baselines)))

    def _motion(self, pair: EvalPair, clip: _Clip) -> tuple[HeadMotion, np.ndarray] | None:
        """The truth's head motion and the identity's landmarks, when --align-truth or the paste+motion
        baseline needs them and they can be had."""
        if not (self.options.align_truth or "paste+motion" in self.options.baselines):
            return None
        motion, identity_lmk = self._truth_motion(pair, clip)
        return None if motion is None or identity_lmk is None else (motion, identity_lmk)

    def _aligned(self, pair: EvalPair, clip: _Clip, motion: tuple[HeadMotion, np.ndarray] | None) -> _Clip:
        """The clip with its truth's head moved onto the identity image's pose (`alignment.align_truth`), or
        as it is, with a note, when the identity image or the landmarks are missing."""
        from facenhance_cli.evaluation.alignment import align_truth

        if motion is None:
            self._note("raw truth kept: head alignment needs the identity image and prepare's meta.json or "
                       "dlib's 68-point model", pair.name)  # fmt: skip
            return clip
        aligned = align_truth(clip.gt, *motion)
        self.alignment.append((int(aligned.moved.sum()), len(clip.gt), float(aligned.valid.mean())))
        return dataclasses.replace(clip, gt=aligned.frames, valid=aligned.valid)

    def _truth_motion(self, pair: EvalPair, clip: _Clip) -> tuple[HeadMotion | None, np.ndarray | None]:
        """The truth's head motion (prepare's motion.csv beside high.mkv, else estimated from its landmarks)
        and the identity image's landmarks; (None, None) when they cannot be had."""
        from facenhance_cli.motion import estimate_motion, read_motion

        landmarks = self._truth_landmarks(pair, clip) if clip.identity is not None else None
        if landmarks is None or clip.identity is None:
            return None, None
        stored = pair.gt.parent / "motion.csv"
        if pair.gt.name == "high.mkv" and stored.is_file():
            return read_motion(stored, len(clip.gt)), landmarks[1]
        return estimate_motion(clip.identity, clip.gt, landmarks[0], landmarks[1]), landmarks[1]

    def _truth_landmarks(self, pair: EvalPair, clip: _Clip) -> tuple[np.ndarray, np.ndarray] | None:
        """(F, 68, 2) truth and (68, 2) identity landmarks in the truth's pixels: prepare's (meta.json beside
        high.mkv; its frame 0 is the identity image) when there, else dlib's when loaded, else None."""
        assert clip.identity is not None
        size = clip.gt.shape[1]
        stored = prepared_landmarks(pair.gt, size, len(clip.gt))
        if stored is not None and (clip.gt[0] == clip.identity).all():
            return stored, stored[0]
        nets = self.features.nets
        if nets.faces is None or "dlib_landmarks68" not in nets.dlib_sha256:
            return None
        identity_lmk = self.features.landmarks(clip.identity[None])[0][0]
        truth_lmk = stored if stored is not None else self.features.landmarks(clip.gt)[0]
        return (truth_lmk, identity_lmk) if np.isfinite(identity_lmk).all() else None

    def notes(self) -> list[str]:
        """One line per note, with how many videos (and which, the first three) it applies to."""
        out = []
        for what, names in self._skipped.items():
            shown = ", ".join(sorted(names)[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            out.append(f"{what} ({len(names)} videos: {shown})")
        return out

    def _note(self, note: str, name: str) -> None:
        self._skipped.setdefault(note, set()).add(name)

    def _identity_embedding(self, identity: np.ndarray | None, name: str) -> np.ndarray | None:
        if identity is None or not self.metrics & {"acd_i", "id_match"}:
            return None
        vectors, missing = self.features.embeddings(identity[None])
        if missing:
            self._note("no face found in the identity image (whole image used)", name)
        return vectors[0]

    def _score(
        self, name: str, frames: np.ndarray, clip: _Clip, gt_lmk: np.ndarray | None, id_emb: np.ndarray | None
    ) -> ScoreRow:
        """One video's row: VIDEO_KEYS (None where not computed), frames, no_face_frames, identical_frames."""
        from facenhance_cli.metrics.fidelity import ssim_frames
        from facenhance_cli.metrics.sharpness import sharpness_ratio

        metrics = self.metrics
        row: ScoreRow = {"name": name, "frames": len(frames), **{k: None for k in VIDEO_KEYS}}
        row["identical_frames"] = 0
        no_face = 0
        gt = clip.gt
        if "psnr" in metrics:
            row["psnr"], row["identical_frames"], row["psnr_unseen"] = _psnr(frames, clip)
        if "ssim" in metrics:
            row["ssim"] = float(np.nanmean(ssim_frames(frames, gt, clip.valid)))
        if metrics & IDENTITY_METRICS:
            no_face = self._identity_scores(row, frames, id_emb, name)
        if gt_lmk is not None and "sharpness" in metrics:
            row["sharpness"] = sharpness_ratio(frames, gt, gt_lmk)
        if gt_lmk is not None and "lmk" in metrics:
            no_face = max(no_face, self._landmark_scores(row, frames, gt_lmk))
        row["no_face_frames"] = no_face
        return row

    def _identity_scores(
        self, row: ScoreRow, frames: np.ndarray, id_emb: np.ndarray | None, name: str
    ) -> int:
        """acd, acd_i and id_match into `row`; returns the frames with no face found."""
        from facenhance_cli.metrics.identity import acd, acd_i, id_match

        emb, no_face = self.features.embeddings(frames)
        if "acd" in self.metrics:
            row["acd"] = acd(emb) if len(emb) > 1 else None
        if id_emb is not None:
            row["acd_i"] = acd_i(emb, id_emb) if "acd_i" in self.metrics else None
            row["id_match"] = id_match(emb, id_emb) if "id_match" in self.metrics else None
        elif self.metrics & {"acd_i", "id_match"}:
            self._note("acd_i and id_match skipped: no identity image", name)
        return no_face

    def _landmark_scores(self, row: ScoreRow, frames: np.ndarray, gt_lmk: np.ndarray) -> int:
        """lmk_nme (all, mouth, eyes) and expr_nme into `row`; returns the frames with no face found."""
        from facenhance_cli.metrics.landmarks import expression_nme, landmark_nme

        lmk, missing = self.features.landmarks(frames)
        nme = landmark_nme(lmk, gt_lmk)
        row["lmk_nme"] = float(nme["all"].mean())
        row["lmk_nme_mouth"] = float(nme["mouth"].mean())
        row["lmk_nme_eyes"] = float(nme["eyes"].mean())
        row["expr_nme"] = float(expression_nme(lmk, gt_lmk).mean())
        return missing

    def _sheet_sample(self, clip: _Clip, baselines: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A few evenly spaced frames of each row of the contact sheet."""
        n = len(clip.gt)
        picks = np.unique(np.linspace(0, n - 1, self.options.sheet_frames).round().astype(int))
        sample = {"low": clip.low[picks]} if clip.low is not None else {}
        sample["output"] = clip.gen[picks]
        sample["ground truth"] = clip.gt[picks]
        sample.update({b: baselines[b][picks] for b in self.options.baselines if b in baselines})
        return sample


def _psnr(frames: np.ndarray, clip: _Clip) -> tuple[float, int, float | None]:
    """A video's PSNR against the clip's truth (its known pixels), its count of identical frames, and its
    PSNR over the unseen frames.

    Identical frames (PSNR inf) are left out of the video's mean and counted: prepare's identity.png is
    the clip's first frame, so the identity baseline always has one, and a single inf would make the
    whole video inf. A fully identical video stays inf. Unseen frames are those whose ground truth is not
    the identity image (every frame without one); None when there are none.
    """
    from facenhance_cli.metrics.fidelity import psnr_frames

    values = psnr_frames(frames, clip.gt, clip.valid)  # (F,)
    unseen = clip.unseen
    return (*_finite_mean(values), _finite_mean(values[unseen])[0] if unseen.any() else None)


def _finite_mean(values: np.ndarray) -> tuple[float, int]:
    """The mean of the finite values (inf when there are none) and the count of infinite ones."""
    finite = values[np.isfinite(values)]
    return (float(finite.mean()) if len(finite) else float("inf")), int(len(values) - len(finite))


def fvd_scores(features: Features, methods: tuple[str, ...], warnings: list[str]) -> dict[str, float | None]:
    """FVD of each method's set against the ground-truth set, where every video has its features."""
    from facenhance_cli.metrics.fvd import FVD_MIN_VIDEOS, fvd_from_features

    fvd: dict[str, float | None] = {m: None for m in methods}
    if not features.fvd_ok:
        return fvd
    n = len(features.i3d["gt"])
    if n < 2:
        warnings.append(f"skipped fvd: it needs at least 2 videos per set (got {n})")
        return fvd
    if n < FVD_MIN_VIDEOS:
        warnings.append(FEW_VIDEOS_NOTE.format(n=n, m=FVD_MIN_VIDEOS))
    real = np.stack(features.i3d["gt"])
    for method in methods:
        feats = features.i3d[method]
        if len(feats) == n:  # a baseline missing for some clips would compare other sets
            fvd[method] = fvd_from_features(np.stack(feats), real)
        elif feats:
            warnings.append(f"fvd of baseline {method} skipped: it exists for {len(feats)} of {n} videos")
    return fvd


def truth_settings(options: EvalOptions, alignment: list[tuple[int, int, float]]) -> dict[str, object]:
    """What the report says of the truth it scored against."""
    if not options.align_truth:
        return {"truth": "raw"}
    from facenhance_cli.evaluation.alignment import ALIGNMENT_NOTE

    moved = sum(m for m, _, _ in alignment)
    frames = sum(f for _, f, _ in alignment)
    valid = float(np.mean([v for _, _, v in alignment])) if alignment else None
    summary = {"videos": len(alignment), "frames": frames, "moved_frames": moved, "known_pixels": valid}
    return {"truth": "head-aligned", "truth_alignment": ALIGNMENT_NOTE, "truth_aligned": summary}


def prepared_landmarks(gt_path: Path, size: int, n_frames: int) -> np.ndarray | None:
    """(F, 68, 2) landmarks `prepare` stored for a clip's high.mkv (meta.json beside it), at `size` px."""
    from facenhance_cli.prepare.clip import stored_high_landmarks

    if gt_path.name != "high.mkv":
        return None
    landmarks = stored_high_landmarks(gt_path.parent / "meta.json", size)
    return landmarks if landmarks is not None and len(landmarks) == n_frames else None


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
