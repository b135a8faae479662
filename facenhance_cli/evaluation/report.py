"""The report: summaries over videos, the settings that made it, and its outputs (JSON, CSV, contact sheet)."""

from __future__ import annotations

import csv
import io
import math
import os
from typing import TYPE_CHECKING

import numpy as np

from facenhance_cli.errors import InputError
from facenhance_cli.evaluation.options import (
    METHOD,
    NEEDS_GT_LANDMARKS,
    PSNR_INF_NOTE,
    SUMMARY_KEYS,
    VIDEO_KEYS,
    EvalOptions,
    EvalResult,
    Report,
    ScoreRow,
)
from facenhance_cli.fileio import write_json, write_text
from facenhance_cli.provenance import versions

if TYPE_CHECKING:
    from facenhance_cli.evaluation.features import Features
    from facenhance_cli.evaluation.pairing import EvalPair

BASELINE_DEFINITIONS = {
    "identity": "the identity image (resized to the ground truth's size) repeated for every frame",
    "bicubic": "each low frame upscaled bicubically to the ground truth's size (not pasted on the identity)",
    "paste": "each low frame's face warped onto the identity image (warp registered from the first "
    "low frame, as models with unet.use_pasted_frame condition on) and feathered in",
    "detail": "the paste with the identity image's detail finer than a Gaussian of 2 px (at 192 px) kept "
    "inside the face (conditioning.paste_detail_sigma)",
    "paste+motion": "the paste with its head moved by the clip's head motion (prepare's motion.csv, else "
    "estimated from the truth), over the identity image's background, as `enhance` moves its output",
}


def build_report(
    pairs: list[EvalPair],
    rows: dict[str, list[ScoreRow]],
    fvd: dict[str, float | None],
    options: EvalOptions,
    features: Features,
    frame_counts: list[int],
) -> Report:
    """The method's summary, per_video rows (each with its baselines), baselines' summaries, settings."""
    report: Report = summarize(rows[METHOD], fvd[METHOD])
    report["per_video"] = [
        _video_entry(pair, row, rows, options.baselines)
        for pair, row in zip(pairs, rows[METHOD], strict=True)
    ]
    report["baselines"] = {b: summarize(rows[b], fvd[b]) for b in options.baselines}
    report["settings"] = _settings(len(pairs), frame_counts, options, features)
    return report


def _video_entry(
    pair: EvalPair, row: ScoreRow, rows: dict[str, list[ScoreRow]], baselines: tuple[str, ...]
) -> dict[str, object]:
    entry: dict[str, object] = {
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
        for b in baselines
        for r in rows[b]
        if r["name"] == row["name"]
    }
    return entry


def _settings(
    n_videos: int, frame_counts: list[int], options: EvalOptions, features: Features
) -> dict[str, object]:
    """How the report was made: inputs, metric definitions, networks and their weights, versions."""
    from facenhance_cli.metrics.identity import EMBEDDING_NETWORK, SAME_PERSON_THRESHOLD
    from facenhance_cli.metrics.landmarks import LANDMARK_NETWORK

    metrics = set(features.nets.metrics)
    return {
        "n_videos": n_videos,
        "frames": sum(frame_counts),
        "frames_per_video": sorted(set(frame_counts)),
        "metrics": list(features.nets.metrics),
        "metrics_requested": list(options.metrics),
        "baselines": list(options.baselines),
        "baseline_definitions": BASELINE_DEFINITIONS,
        "psnr_ssim": "per frame on RGB in [0, 255], mean per video, then mean over videos; identical frames "
        "(infinite PSNR) are left out of a video's PSNR mean and counted in identical_frames, a "
        "video identical in every frame has PSNR inf; psnr_unseen: the same over the frames whose ground "
        "truth is not the identity image (the same frames for every method; prepare's frame 0 is the "
        "identity image, the model's input); "
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
        "i3d_sha256": features.nets.i3d_sha256,
        "fvd_features": "I3D Kinetics-400 400-d logits averaged over time, first fvd_frames frames, "
        "bilinear 224x224, [-1, 1]",
        "fvd_frames": options.fvd_frames,
        "fvd_videos": len(features.i3d["gt"]) if features.fvd_ok else 0,
        "fvd_reference": "ground-truth videos",
        "psnr_inf": PSNR_INF_NOTE,
        "cache_dir": str(options.cache_dir) if options.cache_dir else None,
        "cache_hits": features.cache.hits,
        "versions": versions("python", "numpy", "torch", "dlib"),
    }


def summarize(rows: list[ScoreRow], fvd: float | None) -> dict[str, object]:
    """Mean of SUMMARY_KEYS and std of VIDEO_KEYS over videos, the set's FVD and the frame counts."""
    summary: dict[str, object] = {}
    for key in SUMMARY_KEYS:
        summary[key] = fvd if key == "fvd" else _mean([_number(r, key) for r in rows])
    summary["std"] = {key: _std([_number(r, key) for r in rows]) for key in VIDEO_KEYS}
    summary["n_videos"] = len(rows)
    summary["no_face_frames"] = int(sum(_number(r, "no_face_frames") or 0 for r in rows))
    summary["identical_frames"] = int(sum(_number(r, "identical_frames") or 0 for r in rows))
    return summary


def _number(row: ScoreRow, key: str) -> float | None:
    """row[key], a number or None (not computed); the row's one string is its name."""
    value = row.get(key)
    return None if isinstance(value, str) else value


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


def jsonable(value: object) -> object:
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


def report_json_text(report: Report) -> str:
    """The report as indented, strictly valid JSON."""
    import json

    return json.dumps(jsonable(report), indent=2, allow_nan=False) + "\n"


def write_report_json(path: str | os.PathLike[str], report: Report) -> None:
    """Write the report as JSON, atomically."""
    write_json(path, jsonable(report))


CSV_COLUMNS = ("name", "method", "frames", "no_face_frames", "identical_frames", *SUMMARY_KEYS)


def report_csv_text(report: Report) -> str:
    """One row per video and method, then mean and std rows per method (FVD only in the mean rows)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()

    def fmt(v: object) -> object:
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


def write_report_csv(path: str | os.PathLike[str], report: Report) -> None:
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
