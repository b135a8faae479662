"""`facenhance train`: Algorithm 1 on prepared data, resumable, observable, DDP-ready.

Every random choice of a training sample (t, eps, z on the previous frame, flip) comes from a generator
keyed by (seed, step, position in the global batch), and the data order from (seed, epoch): so a resumed
run replays exactly the samples an uninterrupted one would see, and N DDP ranks with batch B/N each see
the same samples as one process with batch B.

Modules: `setup` (options, distributed placement, the run's config and checkpoints), `step` (one
optimisation step), `validation` (validation loss and sample grids), `logs` (log.jsonl and the loss
curve), `trainer` (the loop that ties them together).
"""

from facenhance_cli.training.setup import TrainingInterrupted, TrainOptions
from facenhance_cli.training.trainer import Trainer, train

__all__ = ["Trainer", "TrainOptions", "TrainingInterrupted", "train"]
