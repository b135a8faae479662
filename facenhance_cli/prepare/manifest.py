"""OUT/manifest.jsonl: one JSON object per clip (subject, split, status, reason), kept across runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facenhance_cli.fileio import read_jsonl, write_text
from facenhance_cli.prepare.options import MANIFEST, ClipResult


def read_manifest_rows(path: Path) -> dict[str, dict[str, Any]]:
    """clip_id -> row of a manifest.jsonl as written (every status); unreadable lines are passed over."""
    rows: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for row in read_jsonl(path, strict=False):
            try:
                rows[row["clip_id"]] = row
            except (KeyError, TypeError):
                continue
    return rows


def write_manifest(out_dir: Path, results: list[ClipResult], split: dict[str, str]) -> None:
    """OUT/manifest.jsonl: earlier rows kept, this run's clips updated; one JSON object per line."""
    path = out_dir / MANIFEST
    rows = read_manifest_rows(path)
    for r in results:
        rows[r.clip_id] = {
            "clip_id": r.clip_id,
            "subject": r.subject,
            "expression": r.expression,
            "split": None,
            "n_frames": r.n_frames,
            "status": r.status,
            "reason": r.reason,
            "source": r.source,
            "notes": r.notes,
            "warnings": r.warnings,
        }
    for row in rows.values():
        row["split"] = split.get(row["subject"], "unassigned")
    lines = [json.dumps(rows[k]) for k in sorted(rows)]
    write_text(path, "\n".join(lines) + ("\n" if lines else ""))
