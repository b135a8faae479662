"""The identity image moved by the low face's landmarks or outline (a thin-plate spline): videos for `eval`.

Issue 22's lever "landmarks of the low frames", tried with no network (docs/experiments.md row 47). Frame n
moves points of the identity image by what they moved in the low frames since frame 0 (so frame 0 is the
identity image), in identity px through the paste's registration; a thin-plate spline (Bookstein 1989)
through them, held still on the edit mask's edge, carries the identity image inside the mask (--margin px).
The points (--points):
  dlib      dlib's 68 on each paste (tracked, smoothed over --smooth frames) moved from the identity's own:
            what `enhance` could have; the same detector as `eval`'s expr, so read expr with that in mind;
  prepared  prepare's landmarks_low (the source's landmarks as the low frames were aligned), moved from
            the identity's stored ones: what only `prepare` knows, an upper bound for landmark warps;
  outline   the low face's outline (the edge of its black background): each point of frame 0's outline
            moved along the normal onto frame n's (what `enhance` has, no detector).
Written per clip (W the warped identity, G a 2 px Gaussian, a the paste's face alpha, m the edit mask):
  lwarp       m W + (1 - m) identity;
  lwarp+paste m (G(paste) + W - G(W)) + (1 - m) identity;
  paste+ring  a paste + (1 - a) lwarp: the low face inside, the moved identity in the ring around it;
and with --net DIR (a model's `enhance --lossless` outputs, NAME.mkv), for output O:
  net+lwarp   m (G(O) + W - G(W)) + (1 - m) O;
  net+ring    a O + (1 - a) (m O moved by the same spline + (1 - m) O);
  netin+ring  a O + (1 - a) lwarp.

    python benchmarks/landmark_warp.py PREPARED_TEST_DIR OUT_DIR [--points dlib|prepared|outline]
        [--net DIR] [--margin 16] [--smooth 1]
    facenhance eval OUT_DIR/paste+ring --gt PREPARED_TEST_DIR --align-truth --baseline identity,paste,detail
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from flow_detail import coarse, write_method_videos  # benchmarks/, the script's folder

from facenhance_cli.faces.detection import default_detector
from facenhance_cli.pasting import FEATHER_SIGMA, edit_mask, locate_low_face, paste_low_face, warp_low_face
from facenhance_cli.prepare.clip import stored_high_landmarks
from facenhance_cli.video import read_image, read_video

EDGE_POINTS = 48  # still points on the edit mask's edge
REGULARISATION = 1.0  # TPS smoothing (px^2 scale); noisy 64 px landmarks must not fold the image


def _kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TPS radial basis U(r) = r^2 log r^2 between (N, 2) and (M, 2) points -> (N, M)."""
    r2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.where(r2 > 0, r2 * np.log(np.maximum(r2, 1e-12)), 0.0)


def tps_map(targets: np.ndarray, sources: np.ndarray, size: int) -> np.ndarray:
    """(S, S, 2) float32 map: output pixel -> identity pixel, the spline taking targets onto sources."""
    n = len(targets)
    scale = size / 2.0  # work in units of half the image for a well-conditioned system
    t = targets / scale
    k = _kernel(t, t) + REGULARISATION / scale**2 * np.eye(n)
    p = np.concatenate([np.ones((n, 1)), t], axis=1)  # (N, 3)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n], system[:n, n:], system[n:, :n] = k, p, p.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = sources / scale
    coef = np.linalg.solve(system, rhs)  # (N + 3, 2)
    ys, xs = np.mgrid[0:size, 0:size]
    grid = np.stack([xs.ravel(), ys.ravel()], 1) / scale  # (S*S, 2)
    mapped = _kernel(grid, t) @ coef[:n] + coef[n] + grid @ coef[n + 1 :]
    return (mapped * scale).reshape(size, size, 2).astype(np.float32)


def edge_points(mask: np.ndarray) -> np.ndarray:
    """(EDGE_POINTS, 2) points spread along the outer edge of a [0, 1] mask."""
    contours, _ = cv2.findContours((mask > 0.01).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=len)[:, 0, :].astype(np.float64)
    picks = np.linspace(0, len(outline), EDGE_POINTS, endpoint=False).astype(int)
    return outline[picks]


def paste_landmarks(pastes: list[np.ndarray], smooth: float) -> np.ndarray:
    """(F, 68, 2) dlib points of each paste (tracked from the previous frame), smoothed over time."""
    detector = default_detector("dlib", "auto")
    points = [detector.detect_landmarks(pastes[0])]
    if points[0] is None:
        raise SystemExit("no face found in a paste's first frame")
    for frame in pastes[1:]:
        found = detector.landmarks_near(frame, points[-1])
        points.append(points[-1] if found is None else found)
    track = np.stack(points)
    if smooth > 0:
        track = cv2.GaussianBlur(track.reshape(len(track), -1), (1, 0), sigmaX=1e-6, sigmaY=smooth)
        track = track.reshape(-1, 68, 2)
    return track


def outline_moves(first: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) points on the first coverage's outline and where the current outline has them: each moved
    along the current outline's normal onto it (the signed distance and its gradient; tangential slide unseen)."""
    outline = edge_points(first)  # (K, 2) x, y
    inside = (current > 0.5).astype(np.uint8)
    signed = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5) - cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    signed = cv2.GaussianBlur(signed, (0, 0), 1.5)  # (S, S) px, > 0 outside the current face
    gy, gx = np.gradient(signed)
    x, y = np.clip(outline.round().astype(int), 0, len(signed) - 1).T
    normal = np.stack([gx[y, x], gy[y, x]], 1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-6)
    return outline - signed[y, x, None] * normal, outline


def moved_points(
    clip: Path, args: argparse.Namespace, low: np.ndarray, matrix: np.ndarray, identity: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame, (targets, sources): (K, 2) identity px where the spline takes each source point."""
    size = identity.shape[0]
    if args.points == "outline":
        first = warp_low_face(low[0], matrix, size).coverage  # (S, S)
        return [outline_moves(first, warp_low_face(f, matrix, size).coverage) for f in low]
    if args.points == "prepared":
        meta = json.loads((clip / "meta.json").read_text())
        low_points = np.asarray(meta["landmarks_low"], np.float64)  # (F, 68, 2) low px
        track = low_points @ matrix[:, :2].T + matrix[:, 2]  # (F, 68, 2) identity px
        own = stored_high_landmarks(clip / "meta.json", size)
        assert own is not None, f"{clip}: no landmarks in meta.json"
        identity_points = own[0]
    else:
        found = default_detector("dlib", "auto").detect_landmarks(identity)
        if found is None:
            raise SystemExit(f"{clip.name}: no face found in the identity image")
        identity_points = found
        track = paste_landmarks([paste_low_face(identity, f, matrix) for f in low], args.smooth)
    return [(identity_points + points - track[0], identity_points) for points in track]


def clip_videos(clip: Path, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """One clip's videos (the module's list), float32 (F, S, S, 3)."""
    low, _ = read_video(clip / "low.mkv")
    identity = read_image(clip / "identity.png")
    size = identity.shape[0]
    matrix, _ = locate_low_face(identity, low[0])
    still = identity.astype(np.float32)
    net = read_video(args.net / f"{clip.name}.mkv")[0].astype(np.float32) if args.net else None
    videos: dict[str, list[np.ndarray]] = {}
    for n, (targets, sources) in enumerate(moved_points(clip, args, low, matrix, identity)):
        warped_face = warp_low_face(low[n], matrix, size)
        paste = paste_low_face(identity, low[n], matrix, warped=warped_face).astype(np.float32)
        alpha = cv2.GaussianBlur(warped_face.coverage, (0, 0), FEATHER_SIGMA)[..., None]  # (S, S, 1)
        mask = edit_mask(low[n], matrix, size, warped=warped_face, margin=args.margin)  # (S, S)
        edge = edge_points(mask)
        field = tps_map(np.concatenate([targets, edge]), np.concatenate([sources, edge]), size)  # (S, S, 2)
        warped = remap(still, field)
        m = mask[..., None]
        frame = {"lwarp": m * warped + (1 - m) * still}
        frame["lwarp+paste"] = m * (coarse(paste) + warped - coarse(warped)) + (1 - m) * still
        frame["paste+ring"] = alpha * paste + (1 - alpha) * frame["lwarp"]
        if net is not None:
            out = net[n]
            frame["net+lwarp"] = m * (coarse(out) + warped - coarse(warped)) + (1 - m) * out
            frame["net+ring"] = alpha * out + (1 - alpha) * (m * remap(out, field) + (1 - m) * out)
            frame["netin+ring"] = alpha * out + (1 - alpha) * frame["lwarp"]
        for name, image in frame.items():
            videos.setdefault(name, []).append(image)
    return {name: np.stack(frames) for name, frames in videos.items()}


def remap(image: np.ndarray, field: np.ndarray) -> np.ndarray:
    """`image` sampled at `field` (S, S, 2) identity px, bicubic."""
    return cv2.remap(image, field[..., 0], field[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--net", type=Path, default=None)
    parser.add_argument("--margin", type=int, default=16, help="edit mask margin, px at 192")
    parser.add_argument("--points", choices=("dlib", "prepared", "outline"), default="dlib")
    parser.add_argument("--smooth", type=float, default=1.0, help="landmark smoothing over time, frames")
    args = parser.parse_args()
    write_method_videos(args.clips, args.out, lambda clip: clip_videos(clip, args))


if __name__ == "__main__":
    main()
