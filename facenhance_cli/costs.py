"""Model cost: parameters and GFLOP of one network call, measured with torch's FLOP counter."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from facenhance_cli.config import FacenhanceConfig


@dataclass(frozen=True)
class ModelCost:
    """Trainable parameters and forward GFLOP (2 x multiply-adds) per frame per network call."""

    parameters: int
    gflop_per_call: float


def measure_cost(config: FacenhanceConfig) -> ModelCost:
    """Build the network of `config` on the meta device and count one batch-1 forward."""
    from torch.utils.flop_counter import FlopCounterMode

    from facenhance_cli.conditioning import Conditioning
    from facenhance_cli.nn.unet import build_network, count_parameters

    with torch.device("meta"):
        network = build_network(config)
        size = config.unet.image_size
        image = torch.zeros(1, 3, size, size)
        low = torch.zeros(1, 3, config.encoder.low_size, config.encoder.low_size)
        t = torch.zeros(1, dtype=torch.long)
        mask = torch.zeros(1, 1, size, size)
        cond = Conditioning(
            image, low, prev_frame=image, pasted_frame=image, edit_mask=mask, flow_frame=image
        )  # all inputs
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            network(image, t, cond)  # unused inputs are ignored
    return ModelCost(count_parameters(network), counter.get_total_flops() / 1e9)
