"""Expression encoder E_exp: the 64x64 low frame -> tokens for the UNet's level-5 self-attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facenhance_cli.config import EncoderConfig


class ExpressionEncoder(nn.Module):
    """Strided CNN (the paper leaves E_exp open): (B, 3, 64, 64) in [-1, 1] -> (B, token_grid^2, dim)."""

    def __init__(self, config: EncoderConfig, token_dim: int, groups: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, config.channels[0], 3, padding=1)]
        in_ch = config.channels[0]
        for out_ch in config.channels:
            layers += [
                nn.GroupNorm(min(groups, in_ch), in_ch),
                nn.SiLU(),
                nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1),
                nn.GroupNorm(min(groups, out_ch), out_ch),
                nn.SiLU(),
                nn.Conv2d(out_ch, out_ch, 3, padding=1),
            ]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.token_grid = config.token_grid
        self.low_size = config.low_size
        self.norm = nn.LayerNorm(in_ch)
        self.proj = nn.Linear(in_ch, token_dim)
        # Learned positions: which part of the face a token describes matters for expression.
        self.position = nn.Parameter(torch.randn(1, config.token_grid**2, token_dim) * 0.02)

    def forward(self, low_frame: torch.Tensor) -> torch.Tensor:
        if low_frame.shape[-1] != self.low_size or low_frame.shape[-2] != self.low_size:
            low_frame = F.interpolate(low_frame, size=(self.low_size, self.low_size), mode="bilinear")
        h = self.features(low_frame)  # (B, C, 64 / 2^stages, same)
        h = F.adaptive_avg_pool2d(h, self.token_grid)  # (B, C, G, G)
        tokens = h.flatten(2).transpose(1, 2)  # (B, G*G, C)
        return self.proj(self.norm(tokens)) + self.position  # (B, G*G, token_dim)
