"""The identity image moved by the low frames' optical flow (issue 22's lever): videos to score with `eval`.

Each prepared test clip's identity image is warped, inside the edit mask, by dense optical flow (OpenCV
DIS, medium preset) from low frame n to low frame 0, and the paste's coarse layer put back:
warped + G(paste) - G(warped), G a 2 px Gaussian. The flow is measured one of two ways:
  low      on the low frames upsampled to the identity's size, carried into the identity image through
           the paste's affine registration (the maintainers' version);
  paste    on the pastes themselves (identity coordinates; the background is the identity image in both,
           so the flow falls to 0 outside the face by itself).
Either may be tapered to 0 across the edit mask's margin (--taper SIGMA: the flow times mask x G(mask)) so
that the warp meets the still identity without a seam.
With --net DIR (a model's `enhance --lossless` outputs, one NAME.mkv per clip) it also writes the model's
output with its finer detail replaced by the warped identity's inside the edit mask:
G(output) + warped - G(warped). docs/experiments.md row 26 holds what this scored.

    python benchmarks/flow_detail.py PREPARED_TEST_DIR OUT_DIR [--flow low|paste] [--taper 6] [--net DIR]
    facenhance eval OUT_DIR/flow --gt PREPARED_TEST_DIR --align-truth --baseline identity,paste,detail
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from facenhance_cli.pasting import edit_mask, locate_low_face, paste_low_face
from facenhance_cli.video import read_image, read_video, write_video

COARSE_SIGMA = 2.0  # px at 192: the detail paste's Gaussian


def coarse(image: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), COARSE_SIGMA)


def low_flows(identity: np.ndarray, low: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(F, S, S, 2) displacements in identity px: frame n at p shows what frame 0 has at p + d(p)."""
    size, low_size = identity.shape[0], low.shape[1]
    k = size / low_size
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gray = [
        cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_CUBIC)
        for f in low
    ]
    linear, offset = matrix[:, :2], matrix[:, 2]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    points = np.stack([xs, ys], -1)  # (S, S, 2) identity px
    upsampled = ((points - offset) @ np.linalg.inv(linear).T + 0.5) * k - 0.5  # where each lies in `gray`
    map_x = np.ascontiguousarray(upsampled[..., 0], np.float32)
    map_y = np.ascontiguousarray(upsampled[..., 1], np.float32)
    flows = []
    for frame in gray:
        flow = dis.calc(frame, gray[0], None)  # (S, S, 2) in upsampled low px
        flow = cv2.remap(flow, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        flows.append(((flow / k) @ linear.T).astype(np.float32))
    return np.stack(flows)


def paste_flows(pastes: list[np.ndarray]) -> np.ndarray:
    """(F, S, S, 2) displacements measured between the pastes, which share the identity's coordinates."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gray = [cv2.cvtColor(p, cv2.COLOR_RGB2GRAY) for p in pastes]
    return np.stack([dis.calc(frame, gray[0], None) for frame in gray])


def warp(image: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    size = image.shape[0]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    map_x, map_y = xs + displacement[..., 0], ys + displacement[..., 1]
    return cv2.remap(image, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def clip_videos(clip: Path, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """One clip's flow video (and, with --net, the model's output with the warped detail), float32."""
    low, _ = read_video(clip / "low.mkv")
    identity = read_image(clip / "identity.png")
    matrix, _ = locate_low_face(identity, low[0])
    pastes = [paste_low_face(identity, frame, matrix) for frame in low]
    flows = low_flows(identity, low, matrix) if args.flow == "low" else paste_flows(pastes)
    still = identity.astype(np.float32)
    net = read_video(args.net / f"{clip.name}.mkv")[0].astype(np.float32) if args.net else None
    videos: dict[str, list[np.ndarray]] = {"flow": [], "net+flow": []}
    for n, paste in enumerate(pastes):
        mask = edit_mask(low[n], matrix, identity.shape[0])  # (S, S)
        taper = mask * cv2.GaussianBlur(mask, (0, 0), args.taper) if args.taper > 0 else np.ones_like(mask)
        warped = warp(still, flows[n] * taper[..., None])
        detail = warped - coarse(warped)
        mask = mask[..., None]
        videos["flow"].append(mask * (coarse(paste.astype(np.float32)) + detail) + (1 - mask) * still)
        if net is not None:
            videos["net+flow"].append(mask * (coarse(net[n]) + detail) + (1 - mask) * net[n])
    return {name: np.stack(frames) for name, frames in videos.items() if frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--flow", choices=("low", "paste"), default="low")
    parser.add_argument("--taper", type=float, default=0.0, help="px; 0: no taper")
    parser.add_argument("--net", type=Path, default=None)
    args = parser.parse_args()
    write_method_videos(args.clips, args.out, lambda clip: clip_videos(clip, args))


def write_method_videos(clips: Path, out: Path, make: Callable[[Path], dict[str, np.ndarray]]) -> None:
    """For each prepared clip under `clips`, `make(clip)`'s float videos as OUT/METHOD/CLIP.mkv (lossless),
    one folder per method for `eval`."""
    for clip in sorted(p for p in clips.iterdir() if (p / "low.mkv").exists()):
        fps = read_video(clip / "low.mkv", max_frames=1)[1]
        for name, video in make(clip).items():
            (out / name).mkdir(parents=True, exist_ok=True)
            frames = np.clip(video + 0.5, 0, 255).astype(np.uint8)
            write_video(out / name / f"{clip.name}.mkv", frames, fps, lossless=True)
        print(clip.name, flush=True)


if __name__ == "__main__":
    main()
