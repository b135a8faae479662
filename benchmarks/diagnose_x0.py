"""Where does the denoiser do worse than trivial estimators? Its x0 error against the noise level.

For frames of a prepared test split, at each timestep t: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, then
the RMS error (in [0, 255] levels; PSNR beside it) of three x0 estimates against the ground truth:
  model   the denoiser's x0_pred (its preconditioning, clipping, as every sampler sees it),
  paste   the pasted frame (the low face on the identity image): what the model is conditioned on,
  x_t     x_t / sqrt(abar_t): the noisy frame itself, best at low noise.
Errors over the whole frame and inside the edit mask (the pasted face grown; what a masked model may
change). A model worth its cost beats both trivial estimators at every t.

    python benchmarks/diagnose_x0.py MODEL PREPARED_TEST_DIR [--clips 8] [--frames 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np
import torch

from facenhance_cli.checkpoint import load_for_inference
from facenhance_cli.conditioning import collate
from facenhance_cli.data import FrameDataset, read_manifest, to_tensor
from facenhance_cli.diffusion.denoiser import make_denoiser
from facenhance_cli.diffusion.schedule import make_schedule, q_sample
from facenhance_cli.weights import find_model

TIMESTEPS = (999, 900, 750, 500, 300, 200, 100, 50, 20, 5)


def rms_levels(estimate: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> float:
    """RMS error in 8-bit levels over the pixels where mask is set; images in [-1, 1]."""
    err = ((estimate - truth) * 127.5) ** 2 * mask
    return math.sqrt(float(err.sum() / (mask.sum() * truth.shape[1]).clamp(min=1)))


def psnr(rms: float) -> float:
    return 20 * math.log10(255 / max(rms, 1e-9))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model = load_for_inference(find_model(args.model))
    config = model.config
    schedule = make_schedule(config.diffusion)
    denoiser = make_denoiser(model.network, config, schedule)
    entries = [e for e in read_manifest(args.data) if e.split == "test"] or read_manifest(args.data)
    picks = np.linspace(0, len(entries) - 1, min(args.clips, len(entries))).round().astype(int)
    # The paste and the mask are measured for every model (a v2 model has neither input).
    measured = dataclasses.replace(config.unet, use_pasted_frame=True, use_edit_mask=True)
    data = FrameDataset([entries[i] for i in picks], dataclasses.replace(config, unet=measured))
    positions = []
    for ci in range(len(data.entries)):
        frames = [p for p, (c, _) in enumerate(data.index) if c == ci]
        positions += [frames[int(k)] for k in np.linspace(0, len(frames) - 1, args.frames).round()]
    samples = [data.sample(p, flip=False) for p in positions]
    truth = to_tensor([s.target for s in samples])
    full_cond = collate([s.inputs for s in samples])
    mask = full_cond.edit_mask
    assert mask is not None and full_cond.pasted_frame is not None
    everywhere = torch.ones_like(mask)
    # Give the model only what its config uses (a v2 model has no mask input, but it is still measured there).
    cond = full_cond.replace(
        pasted_frame=full_cond.pasted_frame if config.unet.use_pasted_frame else None,
        edit_mask=mask if config.unet.use_edit_mask else None,
    )
    gen = torch.Generator().manual_seed(args.seed)
    print(
        f"model {args.model}: {len(samples)} frames of {len(data.entries)} test clips; RMS error in levels "
        "(PSNR dB), whole frame | inside the edit mask"
    )
    print("| t | sigma_t | model | paste | x_t / sqrt(abar) | model, mask | paste, mask | x_t, mask |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for t_value in TIMESTEPS:
        t = torch.full((len(samples),), t_value, dtype=torch.long)
        eps = torch.randn(truth.shape, generator=gen)
        x_t = q_sample(schedule, truth, t, eps)
        with torch.no_grad():
            x0_pred = torch.cat(
                [
                    denoiser(x_t[i : i + 4], t[i : i + 4], cond_slice(cond, i))[0]
                    for i in range(0, len(samples), 4)
                ]
            )
        abar = float(schedule.alphas_cumprod[t_value])
        naive = (x_t / abar**0.5).clamp(-1, 1)
        cells = []
        for region in (everywhere, mask):
            for estimate in (x0_pred, full_cond.pasted_frame, naive):
                rms = rms_levels(estimate, truth, region)
                cells.append(f"{rms:.1f} ({psnr(rms):.1f})")
        sigma = ((1 - abar) / abar) ** 0.5
        print(f"| {t_value} | {sigma:.3g} | " + " | ".join(cells) + " |")


def cond_slice(cond, i):
    return cond.replace(**{k: (v[i : i + 4] if v is not None else None) for k, v in vars(cond).items()})


if __name__ == "__main__":
    main()
