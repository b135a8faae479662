"""Face identity metrics on dlib's 128-d face embedding: ACD, ACD-I (paper Sec. 5.3) and id_match (ours).

Network: dlib_face_recognition_resnet_model_v1 (a ResNet-29 trained on ~3M faces; 99.38% on LFW), fed
150x150 chips cut by dlib.get_face_chip from the 5-point predictor's landmarks, as dlib's own
face_recognition example does. The paper used CMU OpenFace nn4.small2.v1, which cannot run here
(opencv 5 dropped readNetFromTorch), so absolute values differ from its Table 2.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

EMBEDDING_NETWORK = "dlib_face_recognition_resnet_model_v1 (128-d, 150x150 chips from the 5-point predictor)"
SAME_PERSON_THRESHOLD = 0.6  # dlib's documented threshold: L2 < 0.6 -> same person


def _frame_key(frame: np.ndarray) -> bytes:
    return hashlib.blake2b(frame.tobytes(), digest_size=16).digest() + str(frame.shape).encode()


@dataclass
class DlibFaces:
    """dlib's HOG face detector, 5/68-point predictors and embedding ResNet; remembers results per frame.

    Frames are uint8 RGB (H, W, 3). A frame seen twice (a static video, the identity baseline) is
    processed once: results are memoised by a hash of its pixels.
    """

    embedding_path: str | os.PathLike[str] | None = None
    landmarks5_path: str | os.PathLike[str] | None = None
    landmarks68_path: str | os.PathLike[str] | None = None
    max_upsample: int = 2  # 192x192 frames hold ~100 px faces; upsampling finds smaller or blurrier ones
    _boxes: dict[bytes, tuple[object, bool]] = field(default_factory=dict, repr=False)
    _emb: dict[bytes, np.ndarray] = field(default_factory=dict, repr=False)
    _lmk: dict[bytes, np.ndarray] = field(default_factory=dict, repr=False)

    _loaded: bool = field(default=False, repr=False)

    def _load(self) -> None:
        # Loaded on first use: a fully cached evaluation never pays the ~1 s of reading 120 MB of models.
        import dlib

        if self._loaded:
            return
        self._detector = dlib.get_frontal_face_detector()
        self._sp5 = dlib.shape_predictor(str(self.landmarks5_path)) if self.landmarks5_path else None
        self._sp68 = dlib.shape_predictor(str(self.landmarks68_path)) if self.landmarks68_path else None
        self._rec = dlib.face_recognition_model_v1(str(self.embedding_path)) if self.embedding_path else None
        self._loaded = True

    def box(self, frame: np.ndarray) -> tuple[object, bool]:
        """(dlib.rectangle of the largest face, found); the whole frame with found=False when no face."""
        import dlib

        key = _frame_key(frame)
        if key not in self._boxes:
            self._load()
            rects = []
            for upsample in range(self.max_upsample + 1):
                rects = list(self._detector(frame, upsample))
                if rects:
                    break
            if rects:
                result = (max(rects, key=lambda r: r.width() * r.height()), True)
            else:
                # The whole frame as the box: a 192x192 crop is face-centred, so the predictors still
                # return something usable; the caller counts these frames.
                h, w = frame.shape[:2]
                result = (dlib.rectangle(0, 0, w - 1, h - 1), False)
            self._boxes[key] = result
        return self._boxes[key]

    def embeddings(self, frames: np.ndarray) -> tuple[np.ndarray, int]:
        """(F, H, W, 3) uint8 -> ((F, 128) float64 unit-scale embeddings, number of frames with no face)."""
        import dlib

        self._load()
        if self._rec is None or self._sp5 is None:
            raise RuntimeError("DlibFaces was built without the embedding network or 5-point predictor")
        out = np.empty((len(frames), 128), dtype=np.float64)
        missing = 0
        todo: list[tuple[int, bytes, np.ndarray]] = []
        for i, frame in enumerate(frames):
            frame = np.ascontiguousarray(frame)
            rect, found = self.box(frame)
            missing += not found
            key = _frame_key(frame)
            if key in self._emb:
                out[i] = self._emb[key]
            else:
                chip = dlib.get_face_chip(frame, self._sp5(frame, rect), size=150, padding=0.25)
                todo.append((i, key, chip))
        if todo:
            # One batched call: dlib runs the chips through the ResNet together.
            seen: dict[bytes, int] = {}
            chips: list[np.ndarray] = []
            for _, key, chip in todo:
                if key not in seen:
                    seen[key] = len(chips)
                    chips.append(chip)
            vecs = np.array([np.array(v) for v in self._rec.compute_face_descriptor(chips)], dtype=np.float64)
            for i, key, _ in todo:
                out[i] = self._emb[key] = vecs[seen[key]]
        return out, missing

    def landmarks68(self, frames: np.ndarray) -> tuple[np.ndarray, int]:
        """(F, H, W, 3) uint8 -> ((F, 68, 2) float64 (x, y) pixels, iBUG 300-W order; frames with no face)."""
        self._load()
        if self._sp68 is None:
            raise RuntimeError("DlibFaces was built without the 68-point predictor")
        out = np.empty((len(frames), 68, 2), dtype=np.float64)
        missing = 0
        for i, frame in enumerate(frames):
            frame = np.ascontiguousarray(frame)
            rect, found = self.box(frame)
            missing += not found
            key = _frame_key(frame)
            if key not in self._lmk:
                shape = self._sp68(frame, rect)
                self._lmk[key] = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            out[i] = self._lmk[key]
        return out, missing

    def clear(self) -> None:
        """Forget memoised results (bounded memory over long evaluations)."""
        self._boxes.clear()
        self._emb.clear()
        self._lmk.clear()


def acd(embeddings: np.ndarray) -> float:
    """Average Content Distance: mean L2 distance between consecutive frames' (F, 128) embeddings; F >= 2."""
    if len(embeddings) < 2:
        return float("nan")
    return float(np.linalg.norm(np.diff(embeddings, axis=0), axis=1).mean())


def identity_distances(embeddings: np.ndarray, identity: np.ndarray) -> np.ndarray:
    """L2 distance of each frame's embedding (F, 128) to the identity image's (128,) -> (F,)."""
    return np.linalg.norm(embeddings - identity[None, :], axis=1)


def acd_i(embeddings: np.ndarray, identity: np.ndarray) -> float:
    """ACD-I: mean L2 distance between each frame's embedding and the identity image's."""
    return float(identity_distances(embeddings, identity).mean())


def id_match(embeddings: np.ndarray, identity: np.ndarray, threshold: float = SAME_PERSON_THRESHOLD) -> float:
    """Fraction in [0, 1] of frames whose embedding is within dlib's same-person threshold of the identity."""
    return float((identity_distances(embeddings, identity) < threshold).mean())
