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


def test_slow_bf16_is_told_from_the_cpu_flags(tmp_path, monkeypatch):
    """bf16 on a CPU without AVX512-BF16 / AMX is emulated (9x slower than fp32 here): a warning says so."""
    from facenhance_cli import accel

    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    zen4 = tmp_path / "zen4"
    zen4.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert accel.cpu_has_native_bf16(str(avx2)) is False
    assert accel.cpu_has_native_bf16(str(zen4)) is True
    assert accel.cpu_has_native_bf16(str(tmp_path / "absent")) is None
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda: False)
    assert "no native bf16" in accel.slow_bf16_warning("bf16", "cpu")
    assert accel.slow_bf16_warning("fp32", "cpu") is None
    assert accel.slow_bf16_warning("bf16", "cuda") is None
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda: None)  # unknown: no warning
    assert accel.slow_bf16_warning("bf16", "cpu") is None
