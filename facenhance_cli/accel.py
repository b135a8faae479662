"""Device settings for speed: TF32 and cuDNN autotuning on CUDA, fused AdamW, pinned host-to-GPU copies.

Each is a no-op on the CPU, so the CPU path (and its tests) stays the reference; what they change on a GPU
is precision within TF32's 10-bit mantissa (matmuls and convolutions in fp32) and nothing else.
"""

from __future__ import annotations

from typing import Any

import torch


def configure_cuda_math(device: str) -> None:
    """On CUDA: fp32 matmuls and convolutions on TF32 tensor cores, cuDNN picks the fastest algorithms for
    the fixed shapes of a run (NVIDIA Ampere+ whitepaper: TF32 keeps fp32's range, 10-bit mantissa)."""
    if not device.startswith("cuda"):
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True


def optimizer_options(device: str) -> dict[str, Any]:
    """Extra Adam/AdamW arguments: one fused kernel for every parameter on CUDA, torch's default elsewhere."""
    return {"fused": True} if device.startswith("cuda") else {}


def to_device(tensor: torch.Tensor, device: str) -> torch.Tensor:
    """A CPU tensor on `device`; to a GPU through pinned memory without blocking the host (the copy is
    ordered on the current stream, so the kernels that read it wait for it, the Python thread does not)."""
    if not device.startswith("cuda"):
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
