"""Golden numbers: a fixed-seed tiny network's output and one full DDIM run, a few values each.

They pin the arithmetic, not a quality: any change to the network (layers, their order, initialisation
is not involved: weights are drawn here) or to the sampler's math (timesteps, the DDIM update, its noise)
moves them. The values were computed once with torch 2.13.0 on the CPU by `python tests/test_golden.py`,
which prints them; after an intended change, rerun it and paste the new values with a note in CHANGELOG.md.
"""

from __future__ import annotations

import pytest
import torch

from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import FacenhanceConfig
from facenhance_cli.diffusion.denoiser import make_denoiser
from facenhance_cli.diffusion.recurrent import generate_frame
from facenhance_cli.diffusion.samplers import ddim
from facenhance_cli.diffusion.schedule import make_schedule
from facenhance_cli.nn.unet import build_network

# The tiny preset's structure at 32x32, written out so that a preset edit does not move the numbers.
CONFIG = {
    "name": "golden",
    "unet": {
        "image_size": 32,
        "base_channels": 8,
        "channel_mult": [1, 1, 2, 2, 4, 4],
        "num_res_blocks": 1,
        "attention_levels": [4],
        "head_channels": 16,
        "groups": 4,
    },
    "encoder": {"low_size": 64, "channels": [8, 16, 32], "token_grid": 4},
    "diffusion": {"num_timesteps": 1000, "beta_schedule": "linear", "prediction": "x0", "loss": "x0"},
}
NETWORK_SLICE = [
    -0.181179,
    -0.182729,
    -0.21826,
    0.359663,
    0.208611,
    0.088863,
]  # out[0, 0, 0, :3], out[1, 2, -1, -3:]
DDIM_SLICE = [
    -0.114708,
    -0.099773,
    -0.126729,
    -0.129029,
    0.036844,
    -0.272709,
]  # x0[0, 0, 0, :3], x0[1, 1, 16, 16:19]


def golden_network() -> tuple[FacenhanceConfig, torch.nn.Module]:
    """The network with every weight drawn from one seeded generator (fresh output layers are zero)."""
    config = FacenhanceConfig.from_dict(CONFIG)
    network = build_network(config).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in network.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    return config, network


def inputs() -> Conditioning:
    """Two rows of seeded conditioning: identity and previous frame (B, 3, 32, 32), low frame (B, 3, 64, 64)."""
    gen = torch.Generator().manual_seed(1)
    identity = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    low = torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1
    prev = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    return Conditioning(identity, low, prev)


def network_slice() -> list[float]:
    config, network = golden_network()
    x_t = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = network(x_t, torch.tensor([5, 900]), inputs())
    return [*out[0, 0, 0, :3].tolist(), *out[1, 2, -1, -3:].tolist()]


def ddim_slice() -> list[float]:
    config, network = golden_network()
    schedule = make_schedule(config.diffusion)
    denoiser = make_denoiser(network, config, schedule)
    options = {"steps": 4, "eta": 0.5}  # eta > 0: the per-step noise is part of what is pinned
    with torch.no_grad():
        x0 = generate_frame(denoiser, ddim, schedule, inputs(), [3, 4], [0, 7], config.conditioning, options)
    return [*x0[0, 0, 0, :3].tolist(), *x0[1, 1, 16, 16:19].tolist()]


# CPU kernels differ across instruction sets and thread counts in the last bits; a change to the pinned
# arithmetic moves the values by far more than this.
TOLERANCE = {"rel": 1e-4, "abs": 1e-5}


def test_network_output_slice_is_golden():
    assert network_slice() == pytest.approx(NETWORK_SLICE, **TOLERANCE)


def test_ddim_run_output_slice_is_golden():
    assert ddim_slice() == pytest.approx(DDIM_SLICE, **TOLERANCE)


if __name__ == "__main__":
    print("NETWORK_SLICE =", [round(v, 6) for v in network_slice()])
    print("DDIM_SLICE =", [round(v, 6) for v in ddim_slice()])
