"""GPU speed settings: what they switch on for CUDA, and that the CPU path is left as it is."""

from __future__ import annotations

import pytest
import torch

from facenhance_cli.accel import configure_cuda_math, optimizer_options, to_device


@pytest.fixture
def restore_backend_flags():
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
    )
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = (
        saved
    )


def test_cuda_math_switches_tf32_and_autotuning_only_for_cuda(restore_backend_flags):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    configure_cuda_math("cpu")
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.benchmark
    configure_cuda_math("cuda:1")  # setting the flags needs no GPU
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert torch.backends.cudnn.benchmark


def test_fused_adamw_on_cuda_only():
    assert optimizer_options("cuda") == {"fused": True} and optimizer_options("cuda:0") == {"fused": True}
    assert optimizer_options("cpu") == {}
    params = [torch.nn.Parameter(torch.ones(3))]
    torch.optim.AdamW(params, lr=1e-3, **optimizer_options("cpu"))  # the CPU options build an optimiser


def test_to_device_on_the_cpu_is_a_plain_copy_target():
    x = torch.arange(6.0).reshape(2, 3)
    y = to_device(x, "cpu")
    assert y.device.type == "cpu" and torch.equal(x, y)
