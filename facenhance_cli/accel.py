"""Device settings for speed: TF32 and cuDNN autotuning on CUDA, fused AdamW, pinned host-to-GPU copies,
a compiled (and on CUDA graph-captured) network.

Each is a no-op on the CPU, so the CPU path (and its tests) stays the reference; what they change on a GPU
is precision within TF32's 10-bit mantissa (matmuls and convolutions in fp32) and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
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


def compile_network(network: Callable[..., torch.Tensor], device: str) -> Callable[..., torch.Tensor]:
    """The network through torch.compile with static shapes; on CUDA in mode `reduce-overhead`, which
    replays each batch shape's kernels as one CUDA graph (the per-step call is launch-bound at batch 1)."""
    cuda = device.startswith("cuda")
    compiled = torch.compile(network, mode="reduce-overhead" if cuda else "default", dynamic=False)
    if not cuda:
        return compiled

    def replay(*args: Any) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()  # the last call's output buffers may now be reused
        return compiled(*args)

    return replay


def to_device(tensor: torch.Tensor, device: str) -> torch.Tensor:
    """A CPU tensor on `device`; to a GPU through pinned memory without blocking the host (the copy is
    ordered on the current stream, so the kernels that read it wait for it, the Python thread does not)."""
    if not device.startswith("cuda"):
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16), None when it cannot be told.

    Without either, torch emulates bf16 on the CPU: a `small` training step at 1 thread took 21.6 s in bf16
    against 2.3 s in fp32 on an AVX2-only EPYC (benchmarks/bench_train.py, 2026-12-03).
    """
    try:
        with open(cpuinfo) as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return None
    if not flags:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def slow_bf16_warning(precision: str, device: str) -> str | None:
    """A warning when bf16 is asked for on a CPU that would emulate it, else None."""
    if precision != "bf16" or not device.startswith("cpu") or cpu_has_native_bf16() is not False:
        return None
    return (
        "this CPU has no native bf16 (no AVX512-BF16 or AMX): bf16 runs about 9x slower than fp32 "
        "here; use --precision fp32"
    )
