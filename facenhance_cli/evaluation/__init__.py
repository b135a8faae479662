"""`facenhance eval` pipeline: pair generated and ground-truth videos, score them beside baselines, report.

Inputs are uint8 RGB videos (any container, frame folders, or `prepare` clip folders holding high.mkv,
low.mkv and identity.png). One module a job: `pairing` (which videos belong together), `features`
(the networks and the on-disk feature cache), `baselines` (what doing nothing scores), `scores` (the
metrics per video, means over videos, FVD) and `report` (settings, JSON, CSV, contact sheet).
"""

from facenhance_cli.evaluation.baselines import bicubic_baseline, identity_baseline, paste_baseline
from facenhance_cli.evaluation.features import FeatureCache, default_cache_dir
from facenhance_cli.evaluation.options import (
    BASELINES,
    METHOD,
    METRICS,
    SUMMARY_KEYS,
    VIDEO_KEYS,
    EvalOptions,
    EvalResult,
    parse_names,
)
from facenhance_cli.evaluation.pairing import (
    EvalPair,
    check_pairs,
    expand_videos,
    find_pairs,
    read_pairs_csv,
)
from facenhance_cli.evaluation.report import (
    CSV_COLUMNS,
    SHEET_HEADER,
    SHEET_LABEL_WIDTH,
    contact_sheet,
    jsonable,
    report_csv_text,
    report_json_text,
    write_contact_sheet,
    write_report_csv,
    write_report_json,
)
from facenhance_cli.evaluation.scores import evaluate

__all__ = [
    "BASELINES",
    "CSV_COLUMNS",
    "METHOD",
    "METRICS",
    "SHEET_HEADER",
    "SHEET_LABEL_WIDTH",
    "SUMMARY_KEYS",
    "VIDEO_KEYS",
    "EvalOptions",
    "EvalPair",
    "EvalResult",
    "FeatureCache",
    "bicubic_baseline",
    "check_pairs",
    "contact_sheet",
    "default_cache_dir",
    "evaluate",
    "expand_videos",
    "find_pairs",
    "identity_baseline",
    "jsonable",
    "parse_names",
    "paste_baseline",
    "read_pairs_csv",
    "report_csv_text",
    "report_json_text",
    "write_contact_sheet",
    "write_report_csv",
    "write_report_json",
]
