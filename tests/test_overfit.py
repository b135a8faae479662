"""The whole stack learns: the tiny model overfits one frame pair and ddim 10 steps reproduces it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import make_prepared_dataset

from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import load_preset
from facenhance_cli.data import to_tensor, to_uint8
from facenhance_cli.diffusion.denoiser import make_denoiser
from facenhance_cli.diffusion.recurrent import generate_frame
from facenhance_cli.diffusion.samplers import ddim
from facenhance_cli.diffusion.schedule import make_schedule
from facenhance_cli.training import Trainer, TrainOptions
from facenhance_cli.video import read_image, read_video


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.mark.slow
def test_tiny_model_overfits_one_frame_pair(tmp_path):
    data = make_prepared_dataset(tmp_path / "data", n_train=1, n_test=0, n_frames=1)
    config = load_preset("tiny").replace(
        **{
            "unet.image_size": 32,
            "training.batch_size": 1,
            "training.max_steps": 400,
            "training.lr": 2e-3,
            "training.ema_decay": 0.95,
            "training.flip": False,
            "training.validate_every": 10_000,
            "training.sample_every": 10_000,
            "training.checkpoint_every": 10_000,
        }
    )
    trainer = Trainer(TrainOptions(data, tmp_path / "run", config))
    trainer.run()

    clip = data / "s00_clip"
    target = trainer.train_data.clip(0).high[0]  # (32, 32, 3) uint8: what the model must reproduce
    identity = to_tensor([trainer.train_data.clip(0).identity])
    low = to_tensor([trainer.train_data.clip(0).low[0]])
    schedule = make_schedule(config.diffusion)
    denoiser = make_denoiser(trainer.ema, config, schedule)
    cond = Conditioning(identity, low, prev_frame=identity)
    with torch.no_grad():
        out = generate_frame(denoiser, ddim, schedule, cond, [0], [0], config.conditioning, {"steps": 10})
    generated = to_uint8(out)[0]
    # The identity image is the same scene with a closed mouth; copying it scores this much.
    baseline = psnr(trainer.train_data.clip(0).identity, target)
    score = psnr(generated, target)
    # Copying the identity image (same scene, mouth closed) scores about 26 dB. A model that reproduces the
    # target must beat that clearly: 32 dB is an RMS error of about 6/255, and only the mouth differs.
    # Measured: about 43 dB with x0-prediction (the tiny preset); v-prediction reached 16-23 dB in 400 steps.
    assert baseline < 30.0
    assert score > 32.0, (score, baseline)
    assert read_video(clip / "high.mkv")[0].shape[0] == 1 and read_image(clip / "identity.png").ndim == 3
