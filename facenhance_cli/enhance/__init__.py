"""`facenhance enhance`: low-res face videos + identity images -> 192x192 videos (Algorithm 3), in batches.

Modules: `planning` (jobs from inputs and flags, checked before any model loads), `videos` (one video's
inputs, warnings and outputs), `run` (the videos through `diffusion.recurrent`, B at a time).
"""

from facenhance_cli.enhance.planning import (
    EnhanceJob,
    EnhanceOptions,
    JobResult,
    check_jobs,
    check_run_flags,
    default_batch_videos,
    parse_shard,
    plan_jobs,
    take_shard,
)
from facenhance_cli.enhance.run import Reporter, enhance_videos
from facenhance_cli.enhance.videos import load_identity, prepared_low_frames

__all__ = [
    "EnhanceJob",
    "EnhanceOptions",
    "JobResult",
    "Reporter",
    "check_jobs",
    "check_run_flags",
    "default_batch_videos",
    "enhance_videos",
    "load_identity",
    "parse_shard",
    "plan_jobs",
    "prepared_low_frames",
    "take_shard",
]
