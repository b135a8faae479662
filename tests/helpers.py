"""Synthetic test data in `prepare`'s layout, so train/enhance/eval tests need no face detector."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from facenhance_cli.video import write_image, write_video

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(reason: str) -> None:
    """A third-party file or package is absent: fail under CI=true (CI must have it), skip locally."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: third-party files must be present)")
    pytest.skip(reason)


def require_weight_file(name: str) -> Path:
    """Path of the third-party file `name` through the weights lookup, or `missing`; usable from any
    fixture scope (conftest's `require_weight` fixture is function-scoped)."""
    from facenhance_cli.errors import MissingWeightsError
    from facenhance_cli.weights import find_weight

    try:
        return find_weight(name)
    except MissingWeightsError as exc:
        missing(str(exc))
        raise


def synthetic_clip(n_frames: int, size: int = 192, low_size: int = 64, seed: int = 0):
    """A 'face' (ellipse) whose 'mouth' opens over time on a textured background: high, low, identity."""
    import cv2

    rng = np.random.default_rng(seed)
    background = rng.integers(40, 200, (size, size, 3), dtype=np.uint8)
    background = cv2.GaussianBlur(background, (0, 0), 6)
    skin = tuple(int(c) for c in rng.integers(120, 230, 3))
    highs, lows = [], []
    for n in range(n_frames + 1):
        frame = background.copy()
        c = size // 2
        cv2.ellipse(frame, (c, c), (size // 4, size // 3), 0, 0, 360, skin, -1)
        opening = 1 + int(round(size / 16 * (n / max(n_frames, 1))))
        cv2.ellipse(frame, (c, c + size // 6), (size // 10, opening), 0, 0, 360, (60, 20, 20), -1)
        for dx in (-size // 10, size // 10):
            cv2.circle(frame, (c + dx, c - size // 12), max(2, size // 40), (30, 30, 30), -1)
        if n == 0:
            identity = frame
            continue
        highs.append(frame)
        low = cv2.resize(frame, (low_size, low_size), interpolation=cv2.INTER_AREA)
        mask = np.zeros((low_size, low_size), np.uint8)
        cv2.ellipse(mask, (low_size // 2, low_size // 2), (low_size // 4, low_size // 3), 0, 0, 360, 1, -1)
        lows.append(low * mask[..., None])
    return np.stack(highs), np.stack(lows), identity


def make_prepared_dataset(
    root: Path, n_train: int = 2, n_test: int = 1, n_frames: int = 4, size: int = 192
) -> Path:
    """Write clips in `prepare`'s output layout (manifest.jsonl, CLIP/{high,low}.mkv, identity.png, meta.json)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n_train + n_test):
        clip_id = f"s{i:02d}_clip"
        split = "train" if i < n_train else "test"
        high, low, identity = synthetic_clip(n_frames, size=size, seed=i)
        folder = root / clip_id
        folder.mkdir(exist_ok=True)
        write_video(folder / "high.mkv", high, 25, lossless=True)
        write_video(folder / "low.mkv", low, 25, lossless=True)
        write_image(folder / "identity.png", identity)
        (folder / "meta.json").write_text(json.dumps({"clip_id": clip_id, "fps": 25}))
        still = "".join(f"{n},1,0,0,0\n" for n in range(n_frames))  # a head that does not move
        (folder / "motion.csv").write_text("frame,scale,rotation_deg,tx,ty\n" + still)
        lines.append(
            json.dumps(
                {
                    "clip_id": clip_id,
                    "subject": f"s{i:02d}",
                    "split": split,
                    "n_frames": n_frames,
                    "status": "ok",
                }
            )
        )
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def save_tiny_model(folder: Path, size: int = 32) -> Path:
    """An untrained tiny model at `size` x `size`, sampled with one DDIM step, saved as folder/tiny.pt."""
    from facenhance_cli.checkpoint import save_checkpoint
    from facenhance_cli.config import load_preset
    from facenhance_cli.nn.unet import build_network

    config = load_preset("tiny").replace(**{"unet.image_size": size, "sampling.steps": 1})
    return save_checkpoint(folder / "tiny.pt", config, build_network(config).state_dict())


def write_low_clip(folder: Path, n_frames: int, size: int = 32) -> Path:
    """folder/in.mp4 (a synthetic 64x64 low video) and folder/id.png (its identity image); returns folder."""
    _high, low, identity = synthetic_clip(n_frames, size=size, low_size=64, seed=1)
    write_video(folder / "in.mp4", low, 25)
    write_image(folder / "id.png", identity)
    return folder


def foreign_identity_case(folder: Path) -> tuple[Path, Path, Path]:
    """An untrained pasted-frame model, the example's first 2 low frames and an upside-down copy of its
    identity image (not the low video's face): (model, low.mp4, upside_down.png) in `folder`."""
    from facenhance_cli.checkpoint import save_checkpoint
    from facenhance_cli.config import load_preset
    from facenhance_cli.nn.unet import build_network
    from facenhance_cli.video import read_image, read_video

    config = load_preset("tiny").replace(
        **{"unet.identity_skip": True, "unet.use_pasted_frame": True, "sampling.steps": 1}
    )
    model = save_checkpoint(folder / "pasted.pt", config, build_network(config).state_dict())
    examples = Path(__file__).resolve().parents[1] / "examples"
    low, fps = read_video(examples / "low.mp4", max_frames=2)
    write_video(folder / "low.mp4", low, fps)
    write_image(folder / "upside_down.png", read_image(examples / "neutral.png")[::-1])
    return model, folder / "low.mp4", folder / "upside_down.png"
