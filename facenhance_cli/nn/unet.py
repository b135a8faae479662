"""Conditional UNet of FacEnhance (Sec. 4.1.2, 5.2): (x_t, t, conditioning) -> 3 channels."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import FacenhanceConfig, UNetConfig
from facenhance_cli.nn.encoder import ExpressionEncoder
from facenhance_cli.nn.layers import AttentionBlock, Downsample, ResBlock, Upsample, timestep_embedding


class Level(nn.Module):
    """One resolution of the UNet: residual blocks, each followed by attention where configured."""

    def __init__(self, blocks: list[ResBlock], attentions: list[AttentionBlock] | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attentions = nn.ModuleList(attentions) if attentions else None


class ConditionalUNet(nn.Module):
    """UNet with the inputs stacked on channels (9 by default) and E_exp tokens joining self-attention."""

    def __init__(self, config: FacenhanceConfig) -> None:
        super().__init__()
        u: UNetConfig = config.unet
        self.config = config
        ch = u.level_channels
        emb_dim = u.base_channels * u.time_embed_mult
        self.time_embed = nn.Sequential(
            nn.Linear(u.base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.encoder: ExpressionEncoder | None = None
        if u.use_expression_encoder:
            # Tokens are projected to the widest attention level; narrower ones get a linear projection.
            token_dim = max(ch[lvl] for lvl in u.attention_levels)
            self.encoder = ExpressionEncoder(config.encoder, token_dim, u.groups)
            self.token_proj = nn.ModuleDict(
                {
                    str(lvl): nn.Linear(token_dim, ch[lvl])
                    for lvl in u.attention_levels
                    if ch[lvl] != token_dim
                }
            )
        patch_area = u.patch_size**2  # pixels folded into each position's channels
        self.input_conv = nn.Conv2d(u.in_channels * patch_area, ch[0], 3, padding=1)
        # Modules are created (and so randomly initialised) in this order; checkpoints' keys follow it too.
        self.down, self.downsample, skip_channels = self._down_path(ch, emb_dim)
        self.middle = nn.ModuleList(
            [
                ResBlock(ch[-1], ch[-1], emb_dim, u.groups, u.dropout),
                ResBlock(ch[-1], ch[-1], emb_dim, u.groups, u.dropout),
            ]
        )
        self.up, self.upsample = self._up_path(ch, emb_dim, skip_channels)
        self.out = nn.Sequential(
            nn.GroupNorm(u.groups, ch[0]), nn.SiLU(), nn.Conv2d(ch[0], 3 * patch_area, 3, padding=1)
        )
        out_conv = self.out[-1]
        assert isinstance(out_conv, nn.Conv2d) and out_conv.bias is not None
        nn.init.zeros_(out_conv.weight)
        nn.init.zeros_(out_conv.bias)

    def _level(self, level: int, in_channels: list[int], out_ch: int, emb_dim: int) -> Level:
        """One resolution: a ResBlock (in_channels[i] -> out_ch) per entry, each followed by attention at
        `unet.attention_levels`."""
        u = self.config.unet
        blocks: list[ResBlock] = []
        attns: list[AttentionBlock | None] = []
        for in_ch in in_channels:
            blocks.append(ResBlock(in_ch, out_ch, emb_dim, u.groups, u.dropout))
            attns.append(
                AttentionBlock(out_ch, u.head_channels, u.groups) if level in u.attention_levels else None
            )
        return Level(blocks, cast("list[AttentionBlock]", attns) if attns[0] is not None else None)

    def _down_path(self, ch: list[int], emb_dim: int) -> tuple[nn.ModuleList, nn.ModuleList, list[int]]:
        """The levels going down, a Downsample after each but the last, and the widths of the skips that
        forward() keeps (input conv, every block, every downsample) in order."""
        n = self.config.unet.num_res_blocks
        down, downsample = nn.ModuleList(), nn.ModuleList()
        skip_channels = [ch[0]]
        in_ch = ch[0]
        for level, out_ch in enumerate(ch):
            down.append(self._level(level, [in_ch] + [out_ch] * (n - 1), out_ch, emb_dim))
            skip_channels += [out_ch] * n
            in_ch = out_ch
            if level < len(ch) - 1:
                downsample.append(Downsample(in_ch))
                skip_channels.append(in_ch)
        return down, downsample, skip_channels

    def _up_path(
        self, ch: list[int], emb_dim: int, skip_channels: list[int]
    ) -> tuple[nn.ModuleList, nn.ModuleList]:
        """The levels going up (one block more than down, each taking a skip, last kept first) and an
        Upsample after each but the last."""
        n = self.config.unet.num_res_blocks
        skips = list(skip_channels)
        up, upsample = nn.ModuleList(), nn.ModuleList()
        in_ch = ch[-1]
        for level in reversed(range(len(ch))):
            out_ch = ch[level]
            in_channels = [(in_ch if i == 0 else out_ch) + skips.pop() for i in range(n + 1)]
            up.append(self._level(level, in_channels, out_ch, emb_dim))
            in_ch = out_ch
            if level > 0:
                upsample.append(Upsample(in_ch))
        return up, upsample

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """(B,3,S,S) network input, (B,) int steps, the conditioning its config uses -> (B,3,S,S)."""
        patch = self.config.unet.patch_size
        stacked = F.pixel_unshuffle(torch.cat(self._inputs(x_t, cond), dim=1), patch)  # (B, C p^2, S/p, S/p)
        h = self.input_conv(stacked)  # (B, ch0, S/p, S/p)
        tokens = self.encoder(cond.low_frame) if self.encoder is not None else None  # (B, E, token_dim)
        u = self.config.unet
        emb = self.time_embed(timestep_embedding(t, u.base_channels).to(h.dtype))  # (B, emb_dim)

        def level_tokens(level: int) -> torch.Tensor | None:
            if tokens is None:
                return None
            key = str(level)
            return self.token_proj[key](tokens) if key in self.token_proj else tokens

        skips = [h]
        for level, stage in enumerate(cast("Iterable[Level]", self.down)):
            for i, block in enumerate(stage.blocks):
                h = block(h, emb)
                if stage.attentions is not None:
                    h = stage.attentions[i](h, level_tokens(level))
                skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
                skips.append(h)
        for block in self.middle:
            h = block(h, emb)
        n_levels = len(self.up)
        for i_up, stage in enumerate(cast("Iterable[Level]", self.up)):
            level = n_levels - 1 - i_up
            for i, block in enumerate(stage.blocks):
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
                if stage.attentions is not None:
                    h = stage.attentions[i](h, level_tokens(level))
            if i_up < len(self.upsample):
                h = self.upsample[i_up](h)
        return F.pixel_shuffle(self.out(h), patch)  # (B, 3, S, S)

    def _inputs(self, x_t: torch.Tensor, cond: Conditioning) -> list[torch.Tensor]:
        """x_t and the images its config stacks on the channels (`UNetConfig.stacked_fields`), in order."""
        inputs = [x_t]
        for name, _channels in self.config.unet.stacked_fields:
            image = getattr(cond, name)
            if image is None:
                raise ValueError(f"this network conditions on {name}, which the caller did not give")
            if name == "low_frame":  # without E_exp the low frame is upsampled onto the stack
                image = F.interpolate(image, size=x_t.shape[-2:], mode="bilinear", align_corners=False)
            inputs.append(image)
        return inputs


def build_network(config: FacenhanceConfig) -> ConditionalUNet:
    """The network a config describes (validated first)."""
    return ConditionalUNet(config.validate())


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
