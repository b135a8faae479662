"""Face detection (dlib HOG, BlazeFace) and 68-point landmarks (dlib, face-alignment's FAN) in one frame.

Images are uint8 RGB (H, W, 3); landmarks are float (68, 2) arrays of (x, y) pixel coordinates in the
iBUG 300-W order (dlib and face-alignment agree), with pixel centres at integer coordinates (cv2's
convention).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from facenhance_cli.errors import MissingWeightsError, UsageError

LandmarkBackend = Literal["auto", "dlib", "face-alignment"]
DetectorName = Literal["auto", "dlib", "blazeface"]
LANDMARK_BACKENDS: tuple[str, ...] = get_args(LandmarkBackend)
DETECTORS: tuple[str, ...] = get_args(DetectorName)

# dlib's 68-point predictor was trained on dlib HOG boxes; boxes from other detectors are mapped to
# that convention (side, centre offsets as fractions of the source box side), measured on 34 frames of
# the shared clips (median dlib/BlazeFace ratios). A second pass re-boxes from the first landmarks
# with the dlib-box-vs-landmarks relation measured the same way (104 frames).
_BLAZE_TO_DLIB = (0.968, -0.018, -0.065)  # side ratio, centre dx, centre dy
_LANDMARKS_TO_DLIB = (1.026, -0.021, -0.092)  # relative to the landmarks' width and box centre
DETECT_MAX_SIDE = 640  # detection runs on frames downscaled to this; landmarks on the full frame
DETECT_UPSAMPLE_BELOW = 400  # dlib's HOG finds faces >= 80 px: upsample small frames once


def landmark_extent(landmarks: np.ndarray) -> float:
    """Face size in pixels: max of the landmarks' width and height."""
    span = landmarks.max(axis=0) - landmarks.min(axis=0)
    return float(max(span[0], span[1]))


@dataclass(frozen=True)
class FaceBox:
    """A detected face: corners in pixels and a score (1.0 for detectors without one)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0
    source: str = ""

    @property
    def side(self) -> float:
        """Mean of width and height in pixels."""
        return 0.5 * ((self.x1 - self.x0) + (self.y1 - self.y0))

    @property
    def area(self) -> float:
        """Area in square pixels."""
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    @property
    def centre(self) -> tuple[float, float]:
        """(x, y) centre in pixels."""
        return 0.5 * (self.x0 + self.x1), 0.5 * (self.y0 + self.y1)

    def scaled(self, factor: float) -> FaceBox:
        """The box in a frame resized by `factor`."""
        f = factor
        return FaceBox(self.x0 * f, self.y0 * f, self.x1 * f, self.y1 * f, self.score, self.source)


def iou(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes, in [0, 1]."""
    ix = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def _fan_weights_available() -> bool:
    """True when face-alignment's 2D FAN file sits in the torch hub cache (it is never downloaded here)."""
    try:
        import torch.hub
    except ImportError:
        return False
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return folder.is_dir() and any(p.name.startswith("2DFAN4") for p in folder.iterdir())


class LandmarkDetector:
    """68-point landmarks on uint8 RGB frames: dlib's predictor (or face-alignment's FAN) on detected boxes.

    landmarks: "auto" (FAN when its weights are in the torch hub cache, else dlib), "dlib", "face-alignment".
    detector: "auto" (dlib HOG, BlazeFace for frames where HOG finds nothing and its weights exist),
    "dlib" or "blazeface". `backend` and `detector_name` say what actually runs (recorded in meta.json).
    """

    def __init__(
        self,
        landmarks: str = "auto",
        detector: str = "auto",
        weights_dir: str | os.PathLike[str] | None = None,
        device: str = "cpu",
    ) -> None:
        from facenhance_cli.weights import find_weight, weight_available

        if landmarks not in LANDMARK_BACKENDS:
            raise UsageError(f"unknown --landmarks {landmarks!r}: use {', '.join(LANDMARK_BACKENDS)}")
        if detector not in DETECTORS:
            raise UsageError(f"unknown --detector {detector!r}: use {', '.join(DETECTORS)}")
        self.device = device
        # dlib / face-alignment objects (untyped libraries), built below for the chosen backend.
        self._fan: Any = None
        self._hog: Any = None
        self._blaze: Any = None
        self._predictor: Any = None
        blaze_ok = weight_available("blazeface", weights_dir) and weight_available(
            "blazeface_anchors", weights_dir
        )
        # FaceAlignment always builds its own detector; only BlazeFace can be built offline, so FAN needs it.
        fan_ok = _fan_weights_available() and blaze_ok
        if landmarks == "face-alignment" and not fan_ok:
            raise MissingWeightsError(
                "face-alignment's FAN weights (2DFAN4-*.pth.tar in the torch hub cache) or the BlazeFace "
                "files "
                "are missing, and nothing is downloaded here: use --landmarks dlib (or auto)"
            )
        self.backend = "face-alignment" if landmarks != "dlib" and fan_ok else "dlib"
        if self.backend == "dlib":
            import dlib

            self._predictor = dlib.shape_predictor(str(find_weight("dlib_landmarks68", weights_dir)))
        self._weights_dir = weights_dir
        if detector == "blazeface" or (detector == "auto" and self.backend == "face-alignment"):
            if not blaze_ok:
                find_weight("blazeface", weights_dir)
                find_weight("blazeface_anchors", weights_dir)
            self._blaze = self._load_blazeface(weights_dir)
            self.detector_name = "blazeface"
        else:
            import dlib

            self._hog = dlib.get_frontal_face_detector()
            # auto: BlazeFace (loaded on first need) catches the frames HOG misses (tilted, partly lit faces).
            self.detector_name = "dlib-hog+blazeface" if detector == "auto" and blaze_ok else "dlib-hog"
        if self.backend == "face-alignment":
            self._fan = self._load_fan()

    @staticmethod
    def _load_blazeface(weights_dir):
        from face_alignment.detection.blazeface import FaceDetector

        from facenhance_cli.weights import find_weight

        return FaceDetector(
            device="cpu",
            path_to_detector=str(find_weight("blazeface", weights_dir)),
            path_to_anchor=str(find_weight("blazeface_anchors", weights_dir)),
        )

    def _load_fan(self):
        import face_alignment

        from facenhance_cli.weights import find_weight

        # Detection is ours, but FaceAlignment builds a detector anyway: give it the local BlazeFace files.
        kwargs = {
            "path_to_detector": str(find_weight("blazeface", self._weights_dir)),
            "path_to_anchor": str(find_weight("blazeface_anchors", self._weights_dir)),
        }
        return face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D,
            device=self.device,
            face_detector="blazeface",
            face_detector_kwargs=kwargs,
            compile=False,
        )

    def versions(self) -> dict[str, str]:
        """Versions of the libraries that ran (for meta.json)."""
        out = {}
        for name in ("dlib", "face_alignment"):
            try:
                module = __import__(name)
                out[name] = str(getattr(module, "__version__", "?"))
            except ImportError:
                pass
        return out

    # -- detection -------------------------------------------------------------------------------------

    def _hog_boxes(self, frame: np.ndarray) -> list[FaceBox]:
        import cv2

        h, w = frame.shape[:2]
        factor = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = (
            frame
            if factor == 1.0
            else cv2.resize(frame, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
        )
        upsample = 1 if max(small.shape[:2]) < DETECT_UPSAMPLE_BELOW else 0
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        rects, scores, _ = self._hog.run(gray, upsample, 0.0)
        return [
            FaceBox(r.left(), r.top(), r.right(), r.bottom(), float(s), "dlib-hog").scaled(1.0 / factor)
            for r, s in zip(rects, scores, strict=True)
        ]

    def _blaze_boxes(self, frame: np.ndarray) -> list[FaceBox]:
        if self._blaze is None:
            self._blaze = self._load_blazeface(self._weights_dir)
        boxes = self._blaze.detect_from_image(np.ascontiguousarray(frame).copy())
        out = []
        for b in boxes if boxes is not None else []:
            if len(b) < 4:
                continue
            score = float(b[4]) if len(b) > 4 else 1.0
            out.append(FaceBox(float(b[0]), float(b[1]), float(b[2]), float(b[3]), score, "blazeface"))
        return out

    def detect_faces(self, frame: np.ndarray) -> list[FaceBox]:
        """Face boxes in a uint8 RGB frame, largest first (HOG first, BlazeFace when HOG finds none)."""
        boxes: list[FaceBox] = []
        if self._hog is not None:
            boxes = self._hog_boxes(frame)
        if not boxes and self.detector_name != "dlib-hog":
            boxes = self._blaze_boxes(frame)
        return sorted(boxes, key=lambda b: -b.area)

    # -- landmarks -------------------------------------------------------------------------------------

    def _dlib_points(self, gray: np.ndarray, box: FaceBox) -> np.ndarray:
        import dlib

        rect = dlib.rectangle(int(round(box.x0)), int(round(box.y0)), int(round(box.x1)), int(round(box.y1)))
        shape = self._predictor(gray, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    @staticmethod
    def _dlib_box(cx: float, cy: float, side: float) -> FaceBox:
        return FaceBox(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)

    def landmarks_in_box(self, frame: np.ndarray, box: FaceBox) -> np.ndarray:
        """(68, 2) float64 landmarks of the face in `box` (a box from `detect_faces`)."""
        if self._fan is not None:
            result = self._fan.get_landmarks_from_image(
                frame, detected_faces=[np.array([box.x0, box.y0, box.x1, box.y1, box.score])]
            )
            return np.asarray(result[0][:, :2], np.float64)
        import cv2

        # dlib's predictor reads intensities only; grayscale avoids per-call colour conversion in dlib.
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
        if box.source != "dlib-hog":
            side_r, dx, dy = _BLAZE_TO_DLIB
            cx, cy = box.centre
            s = box.x1 - box.x0
            box = self._dlib_box(cx + dx * s, cy + dy * s, side_r * s)
            # Second pass: re-box from the first landmarks the way dlib's own boxes relate to them.
            first = self._dlib_points(gray, box)
            lo, hi = first.min(axis=0), first.max(axis=0)
            width = hi[0] - lo[0]
            side_r, dx, dy = _LANDMARKS_TO_DLIB
            c = (lo + hi) / 2
            box = self._dlib_box(c[0] + dx * width, c[1] + dy * width, side_r * width)
        return self._dlib_points(gray, box)

    def landmarks_near(self, frame: np.ndarray, guess: np.ndarray) -> np.ndarray | None:
        """(68, 2) landmarks fitted around a guess (e.g. interpolated from neighbour frames), or None when
        the fit lands far from it (>35% of the face size away, or scaled by more than 1.5x)."""
        lo, hi = guess.min(axis=0), guess.max(axis=0)
        width = float(hi[0] - lo[0])
        if width <= 1:
            return None
        side_r, dx, dy = _LANDMARKS_TO_DLIB
        c = (lo + hi) / 2
        box = self._dlib_box(c[0] + dx * width, c[1] + dy * width, side_r * width)
        box = FaceBox(box.x0, box.y0, box.x1, box.y1, 1.0, "dlib-hog")  # already in dlib's convention
        fitted = self.landmarks_in_box(frame, box)
        size = landmark_extent(guess)
        ratio = landmark_extent(fitted) / max(size, 1e-6)
        shift = float(np.linalg.norm(fitted.mean(axis=0) - guess.mean(axis=0)))
        if not (1 / 1.5 < ratio < 1.5) or shift > 0.35 * size:
            return None
        return fitted

    def detect_landmarks(self, frame: np.ndarray) -> np.ndarray | None:
        """(68, 2) float64 landmarks of the largest face in a uint8 RGB frame, or None when there is none."""
        boxes = self.detect_faces(frame)
        if not boxes:
            return None
        return self.landmarks_in_box(frame, boxes[0])


_DEFAULT_DETECTORS: dict[tuple, LandmarkDetector] = {}


def default_detector(
    landmarks: str = "auto",
    detector: str = "auto",
    weights_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
) -> LandmarkDetector:
    """A process-wide cached LandmarkDetector (loading dlib's predictor takes about a second)."""
    key = (landmarks, detector, str(weights_dir or ""), device, os.environ.get("FACENHANCE_WEIGHTS", ""))
    if key not in _DEFAULT_DETECTORS:
        _DEFAULT_DETECTORS[key] = LandmarkDetector(landmarks, detector, weights_dir, device)
    return _DEFAULT_DETECTORS[key]
