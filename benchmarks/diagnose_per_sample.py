"""Does the network's one-step estimate beat its own base frame by frame? PSNR gain against how good the base is.

Mean per-frame PSNR (what `eval` reports) and pooled MSE (what an MSE loss minimises) rank estimators
differently: a model can lower the pooled error, set by the frames the base gets badly wrong, and still
lose PSNR on the many frames the base already gets nearly right. For frames of a prepared dataset's train
or test split, against the targets training uses (head-aligned when the model's config aligns them), this
prints the x0 estimate at t = T-1 (DDIM 1, the shipped sampler's first and biggest step) beside the base
(the pasted frame it edits): whole-frame PSNR gain per quartile of the base's PSNR, the mean gain, and the
pooled MSE ratio.

    python benchmarks/diagnose_per_sample.py MODEL PREPARED_DIR [--split train|test] [--clips 16] [--frames 4]
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from facenhance_cli.checkpoint import load_for_inference
from facenhance_cli.conditioning import collate
from facenhance_cli.data import FrameDataset, TrainingSample, read_manifest, to_tensor
from facenhance_cli.diffusion.denoiser import make_denoiser
from facenhance_cli.diffusion.schedule import make_schedule
from facenhance_cli.weights import find_model


def frame_psnr(estimate: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """(N,) whole-frame PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = ((estimate.clamp(-1, 1) - truth) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-12)  # (N,)
    return (10 * torch.log10(4 / mse)).numpy()


def pick_samples(data: FrameDataset, frames_per_clip: int) -> list[TrainingSample]:
    positions = []
    for ci in range(len(data.entries)):
        frames = [p for p, (c, _) in enumerate(data.index) if c == ci]
        positions += [frames[int(k)] for k in np.linspace(0, len(frames) - 1, frames_per_clip).round()]
    return [data.sample(p, flip=False) for p in positions]


def one_step_estimates(model, samples: list[TrainingSample], seed: int) -> tuple[torch.Tensor, ...]:
    """(truth, base, x0 at t = T-1 from shared pure noise), each (N, 3, S, S)."""
    config = model.config
    schedule = make_schedule(config.diffusion)
    denoiser = make_denoiser(model.network, config, schedule)
    truth = to_tensor([s.target for s in samples])  # (N, 3, S, S)
    cond = collate([s.inputs for s in samples])
    noise = torch.randn(truth.shape[1:], generator=torch.Generator().manual_seed(seed))  # (3, S, S)
    t_last = schedule.num_timesteps - 1
    estimates = []
    with torch.no_grad():
        for i in range(0, len(samples), 4):
            part = cond.replace(**{k: v[i : i + 4] if v is not None else None for k, v in vars(cond).items()})
            n = part.identity_image.shape[0]
            x_t = noise.expand(n, -1, -1, -1)  # (n, 3, S, S): pure noise, as DDIM 1 starts
            estimates.append(denoiser(x_t, torch.full((n,), t_last), part)[0])
    return truth, cond.base, torch.cat(estimates)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unaligned", action="store_true", help="score against the true (unaligned) frames")
    args = parser.parse_args()

    model = load_for_inference(find_model(args.model))
    config = model.config
    entries = [e for e in read_manifest(args.data) if e.split == args.split]
    picks = np.linspace(0, len(entries) - 1, min(args.clips, len(entries))).round().astype(int)
    # The base is the paste for every model; targets head-aligned as the model trained, unless --unaligned.
    unet = dataclasses.replace(config.unet, use_pasted_frame=True)
    training = dataclasses.replace(
        config.training, align_targets=config.training.align_targets and not args.unaligned
    )
    data = FrameDataset(
        [entries[i] for i in picks], dataclasses.replace(config, unet=unet, training=training)
    )
    truth, base, estimate = one_step_estimates(model, pick_samples(data, args.frames), args.seed)
    base_db, model_db = frame_psnr(base, truth), frame_psnr(estimate, truth)
    gain = model_db - base_db
    print(f"{args.model} on {len(gain)} frames of {len(data.entries)} {args.split} clips "
          f"({'unaligned' if args.unaligned or not config.training.align_targets else 'head-aligned'} targets)")  # fmt: skip
    print("| base PSNR quartile | base dB | model dB | gain dB | frames the model wins |")
    print("| --- | ---: | ---: | ---: | ---: |")
    order = np.argsort(base_db)
    for q, part in enumerate(np.array_split(order, 4)):
        print(f"| Q{q + 1} | {base_db[part].mean():.2f} | {model_db[part].mean():.2f} | "
              f"{gain[part].mean():+.2f} | {(gain[part] > 0).mean():.0%} |")  # fmt: skip
    pooled = float(((estimate - truth) ** 2).mean() / ((base - truth) ** 2).mean())
    print(
        f"| all | {base_db.mean():.2f} | {model_db.mean():.2f} | {gain.mean():+.2f} | {(gain > 0).mean():.0%} |"
    )
    print(f"pooled MSE, model over base: {pooled:.3f} (below 1: the MSE loss sees a win)")


if __name__ == "__main__":
    main()
