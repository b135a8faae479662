"""Where the network's forward pass runs: eager torch (the reference) or OpenVINO on the CPU.

A backend replaces only `network(x_t, t, cond) -> (B, 3, S, S)`; preconditioning, samplers and everything
around them stay in torch. OpenVINO runs a graph traced from the torch network (TorchScript, dynamic
batch) and compiled for the CPU in bfloat16 where the CPU has it: on this project's machine the network
ran 3.7x faster than eager torch fp32 and a whole `enhance` 2.6-2.9x (README "Speed"). Converting takes about 15 s for the `small` network, so
the converted graph is cached on disk, keyed by the weights, the config, the network code and the versions.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast, get_args

import torch
from torch import nn

from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import FacenhanceConfig, Precision
from facenhance_cli.errors import UsageError

BackendName = Literal["auto", "torch", "openvino"]
BACKENDS: tuple[str, ...] = get_args(BackendName)
OPENVINO_MISSING = "openvino is not installed: pip install 'facenhance[openvino]'"
Network = Callable[[torch.Tensor, torch.Tensor, Conditioning], torch.Tensor]


def openvino_installed() -> bool:
    """True when the `openvino` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def resolve_backend(name: str, device: str) -> str:
    """`auto` -> torch; openvino only by name (an unusable choice is a usage error).

    With the one-step model facenhance-small-v6 (v7, the default now, does half its network work and was not
    compared with OpenVINO) eager torch was as fast or faster everywhere
    (benchmarks/bench_cli.py, whole commands, 2-core Zen 4 with AVX512-BF16, 2026-12-06): the quick start
    3.7 s in torch bf16 against 4.2 s in OpenVINO bf16 (OpenVINO's start-up and graph load no longer pay
    for themselves over 32 calls), 8 videos x 32 frames 16.1 against 15.5 s (median); without native
    bf16 OpenVINO computes in fp32 and was slower still (AVX2-only EPYC: 19.8 s against 14.9 s, v5).
    """
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}: use {', '.join(BACKENDS)}")
    if name == "auto":
        return "torch"
    if name == "openvino" and not openvino_installed():
        raise UsageError(OPENVINO_MISSING)
    if name == "openvino" and device != "cpu":
        raise UsageError(f"--backend openvino runs on the CPU, not {device}: use --device cpu")
    return name


def resolve_precision(requested: str | None, backend: str, device: str) -> Precision:
    """The precision asked for; `auto` (or None): bf16 on a CPU that computes it natively (AVX512-BF16, AMX),
    on either backend, else fp32 (torch's reference).

    Measured on the 28-person test split (docs/speed.md): bf16 moved PSNR-U by less than 0.05 dB, and on a
    2-core Zen 4 with AVX512-BF16 it ran the quick start faster than fp32.
    """
    if requested not in (None, "auto"):
        return cast(Precision, requested)
    if device != "cpu":
        return "fp32"
    if backend == "openvino":
        return "bf16" if openvino_cpu_has_bf16() else "fp32"
    from facenhance_cli.accel import cpu_has_native_bf16

    return "bf16" if cpu_has_native_bf16() else "fp32"


@functools.cache
def openvino_cpu_has_bf16() -> bool:
    """True when OpenVINO's CPU plugin computes in bfloat16 natively (AVX512-BF16 or AMX); asked once."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class PlainTensorNetwork(nn.Module):
    """The network with plain tensor inputs, (x_t, t, *fields) -> (B, 3, S, S), as exporters want it."""

    def __init__(self, network: nn.Module, fields: list[str]) -> None:
        super().__init__()
        self.network = network
        self.fields = fields

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
        values = dict(zip(self.fields, tensors, strict=True))
        values.setdefault("identity_image", x_t)  # a required field that a network without it never reads
        return self.network(x_t, t, Conditioning(**values))


class OpenVINONetwork:
    """(x_t, t, cond) -> (B, 3, S, S) float32, like ConditionalUNet.forward, run by OpenVINO on the CPU.

    In bf16 the graph is compiled once per batch size: static shapes ran 1.3x faster than a dynamic batch
    here. In f32 the batch stays dynamic: OpenVINO 2026.4's CPU plugin crashed compiling it static.
    """

    def __init__(self, core: Any, model: Any, properties: dict[str, Any], fields: list[str]) -> None:
        self.core, self.model, self.properties, self.fields = core, model, properties, fields
        self.requests: dict[int, Any] = {}  # batch size -> infer request of the graph compiled for it

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        images = [x_t, *(getattr(cond, name) for name in self.fields)]
        arrays = [image.detach().float().cpu().contiguous().numpy() for image in images]
        arrays.insert(1, t.detach().long().cpu().numpy())
        result = self._request(x_t.shape[0]).infer(arrays)
        return torch.from_numpy(result[0].copy())  # a copy: the request reuses its output buffer

    def _request(self, batch: int) -> Any:
        """The infer request for `batch` rows, compiled on first use."""
        static = self.properties["INFERENCE_PRECISION_HINT"] == "bf16"
        key = batch if static else 0
        if key not in self.requests:
            import openvino as ov

            model = self.model.clone()
            if static:
                model.reshape(
                    {port: ov.PartialShape([batch, *port.get_partial_shape()[1:]]) for port in model.inputs}
                )
            self.requests[key] = self.core.compile_model(model, "CPU", self.properties).create_infer_request()
        return self.requests[key]


def make_network(
    network: nn.Module, config: FacenhanceConfig, backend: str, precision: Precision, threads: int
) -> Network:
    """The forward pass `backend` runs: the torch network itself, or an OpenVINO model compiled from it."""
    if backend == "torch":
        return network
    return openvino_network(network, config, precision, threads)


def openvino_network(
    network: nn.Module, config: FacenhanceConfig, precision: Precision, threads: int
) -> OpenVINONetwork:
    """Compile the network for the CPU in `precision` (bf16 only where the CPU has it) with `threads`."""
    import openvino as ov

    core = ov.Core()
    fields = list(config.unet.network_fields)
    model = cached_openvino_model(core, network, config, fields)
    bf16 = precision == "bf16" and openvino_cpu_has_bf16()
    properties = {
        "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",  # one request at a time: all threads on it
    }
    return OpenVINONetwork(core, model, properties, fields)


def cached_openvino_model(core: Any, network: nn.Module, config: FacenhanceConfig, fields: list[str]) -> Any:
    """The network's OpenVINO graph: read from the cache, else exported (and stored when the cache takes it)."""
    folder = openvino_cache_dir() / network_fingerprint(network, config)
    xml = folder / "network.xml"
    if xml.is_file():
        return core.read_model(xml)
    model = export_openvino(network, config, fields)
    _store(model, folder)
    return model


def export_openvino(network: nn.Module, config: FacenhanceConfig, fields: list[str]) -> Any:
    """Trace the network (TorchScript) into an OpenVINO model with a dynamic batch and f32 weights."""
    import openvino as ov

    size, low = config.unet.image_size, config.encoder.low_size
    shapes = {"identity_image": (3, size, size), "low_frame": (3, low, low)}
    shapes.update(prev_frame=(3, size, size), pasted_frame=(3, size, size), edit_mask=(1, size, size))
    shapes.update(flow_frame=(3, size, size))
    batch = 2
    example = [torch.zeros(batch, 3, size, size), torch.zeros(batch, dtype=torch.long)]
    example += [torch.zeros(batch, *shapes[name]) for name in fields]
    types = [ov.Type.i64 if x.dtype == torch.long else ov.Type.f32 for x in example]
    inputs = [(ov.PartialShape([-1, *x.shape[1:]]), kind) for x, kind in zip(example, types, strict=True)]
    wrapper = PlainTensorNetwork(network, fields).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about shape checks that stay true for these inputs
        return ov.convert_model(wrapper, example_input=tuple(example), input=inputs)


def network_fingerprint(network: nn.Module, config: FacenhanceConfig) -> str:
    """A hex key for the cached graph: weights, config, this package's network code, torch and openvino."""
    import openvino as ov

    digest = hashlib.sha256()
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    digest.update(repr(config).encode())
    digest.update(repr(config.unet.network_fields).encode())  # the graph's input order
    for source in sorted((Path(__file__).parent / "nn").glob("*.py")):
        digest.update(source.read_bytes())
    digest.update(f"{torch.__version__} {ov.__version__}".encode())
    return digest.hexdigest()[:24]


def openvino_cache_dir() -> Path:
    """Where converted graphs are kept: FACENHANCE_CACHE, else the platformdirs user cache folder."""
    import os

    import platformdirs

    override = os.environ.get("FACENHANCE_CACHE")
    base = Path(override) if override else Path(platformdirs.user_cache_dir("facenhance"))
    return base / "openvino"


def _store(model: Any, folder: Path) -> None:
    """Save the graph into `folder` under a temporary name, renamed when whole; a failed write is no error."""
    import os
    import shutil

    import openvino as ov

    from facenhance_cli.fileio import temp_path_for

    tmp = temp_path_for(folder)
    try:
        tmp.mkdir(parents=True)
        ov.save_model(model, tmp / "network.xml", compress_to_fp16=False)
        os.replace(tmp, folder)
    except OSError:  # no space, read-only cache, or another process stored it first: run uncached
        shutil.rmtree(tmp, ignore_errors=True)
