"""`facenhance prepare`: raw face videos -> per-clip high (192x192) / low (64x64 face on black) data.

For each clip: select the segment, resample evenly to N frames, detect and track one face, fill and
smooth its landmarks along time, cut one steady square crop for the high frames and align the low
frames OpenFace-style (facenhance_cli.faces). Per clip, everything is written into a hidden temporary
folder with meta.json last, then the folder is renamed to OUT/<clip_id>: a folder with meta.json is
complete, anything else is retried. OUT/manifest.jsonl lists every clip (split, status, reason) and
OUT/split.json the subject-independent split.

One module a job: `inputs` (which clips, which frames), `split`, `clip` (one clip's pipeline and
`prepare_identity`), `manifest`, `batch` (a whole run, serial or in worker processes).
"""

from facenhance_cli.prepare.batch import run_prepare
from facenhance_cli.prepare.clip import is_complete, prepare_identity, process_clip
from facenhance_cli.prepare.inputs import (
    LAYOUTS,
    MUG_FPS,
    SEGMENTS_HELP,
    ClipSource,
    discover_inputs,
    expression_from_name,
    parse_segment,
    resample_indices,
    subject_from_name,
)
from facenhance_cli.prepare.manifest import read_manifest_rows, write_manifest
from facenhance_cli.prepare.options import (
    LOW_ALIGNMENTS,
    MANIFEST,
    META,
    SPLIT_FILE,
    ClipResult,
    PrepareOptions,
    PrepareReport,
)
from facenhance_cli.prepare.split import (
    assign_split,
    empty_train_message,
    make_split,
    read_split,
    resolve_split,
    split_problems,
    write_split,
)

__all__ = [
    "LAYOUTS",
    "LOW_ALIGNMENTS",
    "MANIFEST",
    "META",
    "MUG_FPS",
    "SEGMENTS_HELP",
    "SPLIT_FILE",
    "ClipResult",
    "ClipSource",
    "PrepareOptions",
    "PrepareReport",
    "assign_split",
    "discover_inputs",
    "empty_train_message",
    "expression_from_name",
    "is_complete",
    "make_split",
    "parse_segment",
    "prepare_identity",
    "process_clip",
    "read_manifest_rows",
    "read_split",
    "resample_indices",
    "resolve_split",
    "run_prepare",
    "split_problems",
    "subject_from_name",
    "write_manifest",
    "write_split",
]
