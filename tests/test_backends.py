"""`enhance --backend`: OpenVINO agrees with torch (the reference), `auto` picks what it says, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from facenhance_cli import backends
from facenhance_cli.checkpoint import save_checkpoint
from facenhance_cli.cli import app
from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import load_preset
from facenhance_cli.errors import UsageError
from facenhance_cli.metrics.fidelity import psnr_frames
from facenhance_cli.nn.unet import build_network
from facenhance_cli.video import read_video, write_video

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PASTED_EDM = {
    "unet.use_prev_frame": False,
    "unet.identity_skip": True,
    "unet.use_pasted_frame": True,
    "unet.use_edit_mask": True,
    "diffusion.preconditioning": "edm",
    "diffusion.sigma_data": 0.2,
    "sampling.steps": 3,
}
# The pasted EDM network with 2x2 input blocks folded into channels (unet.patch_size), one level fewer.
PATCHED = {
    **PASTED_EDM,
    "unet.patch_size": 2,
    "unet.channel_mult": [1, 2, 2, 4, 4],
    "unet.attention_levels": [3],
}


def random_network(size: int, **overrides):
    """A tiny network at `size` px with perturbed weights (an untrained one outputs zeros)."""
    config = load_preset("tiny").replace(**{"unet.image_size": size, **overrides})
    torch.manual_seed(0)
    net = build_network(config).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net, config


def random_conditioning(
    batch: int, size: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, Conditioning]:
    """(x_t, t, cond) with every field given (a network reads only those its config uses)."""
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(batch, 3, size, size, generator=g) * 2 - 1 for _ in range(4)]
    low = torch.rand(batch, 3, 64, 64, generator=g) * 2 - 1
    mask = torch.rand(batch, 1, size, size, generator=g)
    cond = Conditioning(images[1], low, prev_frame=images[2], pasted_frame=images[3], edit_mask=mask)
    return images[0], torch.randint(0, 1000, (batch,), generator=g), cond


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides", [{}, PASTED_EDM, PATCHED], ids=["previous-frame", "pasted-edm", "pasted-edm-patch2"]
)
def test_openvino_network_agrees_with_torch(require_openvino, overrides):
    """The compiled graph gives the torch network's output: to float rounding in fp32, to bfloat16's
    precision in bf16, for batch sizes other than the one the graph was exported with."""
    net, config = random_network(32, **overrides)
    fp32 = backends.make_network(net, config, "openvino", "fp32", threads=1)
    bf16 = backends.make_network(net, config, "openvino", "bf16", threads=1)
    for batch in (3, 1):
        x_t, t, cond = random_conditioning(batch, 32, seed=batch)
        with torch.no_grad():
            reference = net(x_t, t, cond)
        scale = reference.abs().max().item()
        assert scale > 0.1  # the perturbed network's output depends on its inputs
        assert torch.allclose(fp32(x_t, t, cond), reference, atol=1e-4 * scale, rtol=1e-4)
        assert (bf16(x_t, t, cond) - reference).abs().max().item() < 0.05 * scale


@pytest.fixture(scope="module")
def pasted_model(tmp_path_factory) -> Path:
    """A tiny pasted-frame EDM model at 192 px with random weights, and the example's first 3 low frames."""
    folder = tmp_path_factory.mktemp("pasted")
    net, config = random_network(192, **PASTED_EDM)
    low, fps = read_video(EXAMPLES / "low.mp4", max_frames=3)
    write_video(folder / "low.mkv", low, fps, lossless=True)
    return save_checkpoint(folder / "pasted.pt", config, net.state_dict())


def enhance_example(model: Path, out: Path, *options: str):
    """`enhance` the 3 low frames beside `model` with the example's identity image, losslessly."""
    return CliRunner().invoke(
        app,
        ["enhance", str(model.parent / "low.mkv"), "-i", str(EXAMPLES / "neutral.png"), "-o", str(out),
         "--model", str(model), "--lossless", *options],
    )  # fmt: skip


@pytest.mark.slow
def test_enhance_on_openvino_is_within_psnr_of_torch(require_openvino, pasted_model, tmp_path):
    """A whole `enhance` of 3 frames on OpenVINO in bf16 is the torch fp32 video to within 40 dB."""
    videos = {}
    for backend, precision in (("torch", "fp32"), ("openvino", "bf16")):
        out = tmp_path / f"{backend}.mkv"
        result = enhance_example(pasted_model, out, "--backend", backend, "--precision", precision)
        assert result.exit_code == 0, result.output
        videos[backend] = read_video(out)[0]
    psnr = psnr_frames(videos["torch"], videos["openvino"])
    assert psnr.min() > 40, psnr


def test_auto_takes_torch_and_openvino_only_by_name(monkeypatch):
    """`auto` is torch, even where OpenVINO is installed and computes bf16 (the one-step default ran the
    quick start faster in torch); OpenVINO asked for by name is kept, and refused off the CPU."""
    monkeypatch.setattr(backends, "openvino_installed", lambda: True)
    monkeypatch.setattr(backends, "openvino_cpu_has_bf16", lambda: True)
    assert backends.resolve_backend("auto", "cpu") == "torch"
    assert backends.resolve_backend("auto", "cuda:0") == "torch"
    assert backends.resolve_backend("openvino", "cpu") == "openvino"
    with pytest.raises(UsageError, match="runs on the CPU"):
        backends.resolve_backend("openvino", "cuda:0")
    monkeypatch.setattr(backends, "openvino_installed", lambda: False)
    with pytest.raises(UsageError):
        backends.resolve_backend("openvino", "cpu")


def test_auto_precision_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch):
    """--precision auto (the default): bf16 on a CPU with AVX512-BF16 or AMX, on either backend; fp32 on a
    CPU that would emulate it and off the CPU; a precision asked for by name is kept."""
    from facenhance_cli import accel

    monkeypatch.setattr(backends, "openvino_cpu_has_bf16", lambda: True)
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda: True)
    assert backends.resolve_precision(None, "openvino", "cpu") == "bf16"
    assert backends.resolve_precision("auto", "torch", "cpu") == "bf16"
    assert backends.resolve_precision("fp32", "openvino", "cpu") == "fp32"
    assert backends.resolve_precision("auto", "torch", "cuda:0") == "fp32"
    monkeypatch.setattr(backends, "openvino_cpu_has_bf16", lambda: False)
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda: False)
    assert backends.resolve_precision(None, "openvino", "cpu") == "fp32"
    assert backends.resolve_precision("auto", "torch", "cpu") == "fp32"
    assert backends.resolve_precision("bf16", "torch", "cpu") == "bf16"  # asked for: kept, with a warning
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda: None)  # cannot be told: the reference
    assert backends.resolve_precision("auto", "torch", "cpu") == "fp32"


def test_the_default_backend_is_auto_and_says_which_it_took(pasted_model, tmp_path, monkeypatch):
    """With no --backend (and no FACENHANCE_BACKEND) torch runs the network, in bf16 where the CPU computes
    it natively, and the run says so."""
    from facenhance_cli.accel import cpu_has_native_bf16

    monkeypatch.delenv("FACENHANCE_BACKEND", raising=False)
    result = enhance_example(pasted_model, tmp_path / "out.mkv", "--steps", "1", "--verbose")
    assert result.exit_code == 0, result.output
    expected = "torch in bf16" if cpu_has_native_bf16() else "torch in fp32"
    assert f"network on {expected}, " in result.output


def test_missing_openvino_is_one_line_and_exit_2(monkeypatch, tmp_path):
    monkeypatch.setattr(backends, "openvino_installed", lambda: False)
    result = CliRunner().invoke(
        app,
        ["enhance", str(EXAMPLES / "low.mp4"), "-i", str(EXAMPLES / "neutral.png"), "-o",
         str(tmp_path / "out.mp4"), "--backend", "openvino"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.output.strip() == "error: openvino is not installed: pip install 'facenhance[openvino]'"
    assert not (tmp_path / "out.mp4").exists()


def test_openvino_on_a_gpu_and_unknown_backends_are_usage_errors(monkeypatch):
    monkeypatch.setattr(backends, "openvino_installed", lambda: True)
    with pytest.raises(UsageError, match="runs on the CPU"):
        backends.resolve_backend("openvino", "cuda:0")
    with pytest.raises(UsageError, match="unknown backend"):
        backends.resolve_backend("onnx", "cpu")
    result = CliRunner().invoke(app, ["enhance", "x.mp4", "--backend", "onnx"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_the_converted_graph_is_cached_by_weights(require_openvino, monkeypatch):
    """A second compile of the same weights reads the stored graph; other weights are a new entry."""
    net, config = random_network(32)
    backends.make_network(net, config, "openvino", "fp32", threads=1)

    def no_export(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr(backends, "export_openvino", no_export)
    backends.make_network(net, config, "openvino", "fp32", threads=1)
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    with pytest.raises(AssertionError, match="exported again"):
        backends.make_network(net, config, "openvino", "fp32", threads=1)


@pytest.mark.slow
@pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)  # torch's own
def test_enhance_with_compile_agrees_with_eager(pasted_model, tmp_path, monkeypatch):
    """`--compile` runs the network through torch.compile and gives the eager video to within 40 dB.

    Dynamo's capture is what is tested; inductor's code generation is swapped for aot_eager here, as a
    C++ compile of even the tiny network took 160 s on the 2-core machine."""
    real_compile, modes = torch.compile, []

    def aot_eager(model, mode=None, dynamic=None):
        modes.append(mode)
        return real_compile(model, backend="aot_eager", dynamic=dynamic)

    monkeypatch.setattr(torch, "compile", aot_eager)
    videos = {}
    for name, options in (("eager", ()), ("compiled", ("--compile",))):
        out = tmp_path / f"{name}.mkv"
        result = enhance_example(pasted_model, out, "--backend", "torch", "--precision", "fp32", *options)
        assert result.exit_code == 0, result.output
        videos[name] = read_video(out)[0]
    assert modes == ["default"]  # compiled once, for the CPU (CUDA takes reduce-overhead: CUDA graphs)
    psnr = psnr_frames(videos["eager"], videos["compiled"])
    assert psnr.min() > 40, psnr


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.parametrize(
    "overrides", [{}, PASTED_EDM, PATCHED], ids=["previous-frame", "pasted-edm", "pasted-edm-patch2"]
)
def test_the_network_compiles_as_one_graph(overrides):
    """No graph breaks (fullgraph), so a CUDA graph can hold a whole network call."""
    net, config = random_network(32, **overrides)
    x_t, t, cond = random_conditioning(2, 32)
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True, dynamic=False)
    with torch.no_grad():
        assert torch.equal(compiled(x_t, t, cond), net(x_t, t, cond))


def test_compile_is_for_the_torch_backend(tmp_path):
    result = CliRunner().invoke(
        app,
        ["enhance", str(EXAMPLES / "low.mp4"), "-i", str(EXAMPLES / "neutral.png"), "-o",
         str(tmp_path / "out.mp4"), "--backend", "openvino", "--compile"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: --compile is for the torch backend; openvino compiles its own graph"
    )
    assert not (tmp_path / "out.mp4").exists()
