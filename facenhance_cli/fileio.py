"""Atomic file writes: everything is written to a temporary name beside the target, then renamed.

Also the guards every command runs before any work: no output may be one of its inputs, every output
folder must take a file, and a failed write names the path and the disk it was on.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from facenhance_cli.errors import FacenhanceError, InputError, UsageError, first_line

# errno values that mean "this disk or folder does not take the file", whatever the body was doing.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def temp_path_for(path: Path) -> Path:
    """A unique temporary name in the target's folder that keeps the suffix (codecs pick formats by it)."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


def mount_point(path: str | os.PathLike[str]) -> Path:
    """The mount point (disk) holding `path`, or the nearest existing folder above it."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}"
        n /= 1000
    return f"{n:.0f} TB"


def write_error_message(path: str | os.PathLike[str], exc: BaseException, needed: int = 0) -> str:
    """One line for a failed write: the path, why (disk full, read-only, no permission) and the disk."""
    disk = mount_point(path)
    try:
        free = shutil.disk_usage(disk).free
    except OSError:
        free = None
    where = f"on {disk}" + (f", {_size(free)} free" if free is not None else "")
    code = getattr(exc, "errno", None)
    if code == errno.EROFS:
        return f"cannot write {path}: read-only file system ({where})"
    if code in (errno.EACCES, errno.EPERM):
        return f"cannot write {path}: permission denied ({where})"
    # torch's writer raises RuntimeError with no errno: a (nearly) full disk is then the likely cause
    if code in (errno.ENOSPC, errno.EDQUOT) or (free is not None and free <= max(needed, 1 << 20)):
        return f"cannot write {path}: disk full ({where})"
    reason = getattr(exc, "strerror", None) or first_line(exc, type(exc).__name__)
    return f"cannot write {path}: {reason[:160]} ({where})"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path; on success rename it onto `path`, on any error delete it."""
    target = Path(path)
    refuse_file_as_folder(target.parent)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FacenhanceError(write_error_message(target.parent, exc)) from None
    tmp = temp_path_for(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        _remove(tmp)
        if exc.errno in _WRITE_ERRNOS or (
            exc.errno in (errno.EACCES, errno.EPERM) and exc.filename in (str(tmp), str(target), None)
        ):
            raise FacenhanceError(write_error_message(target, exc)) from None
        raise
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# -- guards run before any work ----------------------------------------------------------------------------


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def refuse_inputs_as_outputs(
    outputs: Iterable[str | os.PathLike[str]], inputs: Iterable[str | os.PathLike[str]]
) -> None:
    """UsageError (exit 2) when an output is one of the inputs: same resolved path, or the same file
    through a hard link or symlink (st_dev, st_ino). Whatever the flags: an input is never written over."""
    by_key: dict[tuple[int, int], Path] = {}
    by_path: dict[Path, Path] = {}
    for item in inputs:
        p = Path(item)
        by_path[p.resolve()] = p
        key = _file_key(p)
        if key is not None:
            by_key[key] = p
    for item in outputs:
        out = Path(item)
        key = _file_key(out)
        hit = by_path.get(out.resolve()) or (by_key.get(key) if key is not None else None)
        if hit is not None:
            same = "is" if out.resolve() == hit.resolve() else "is the same file as"
            raise UsageError(f"output {out} {same} the input {hit}: refusing to write over an input")


def refuse_file_as_folder(folder: str | os.PathLike[str]) -> None:
    """UsageError (exit 2) when `folder`, or the nearest existing path above it, is a file: `-o afile/x.mp4`
    says so instead of the OS's "File exists" or "Not a directory"."""
    p = Path(os.path.abspath(folder))
    while not p.exists() and p != p.parent:
        p = p.parent
    if p.exists() and not p.is_dir():
        raise UsageError(f"cannot write in {folder}: {p} is a file, not a folder")


def check_writable(folder: str | os.PathLike[str]) -> None:
    """Create (if missing) `folder`, write and remove a small probe file there: a read-only or full disk
    fails now, in one line naming the folder and the disk, instead of after the compute."""
    folder = Path(folder)
    refuse_file_as_folder(folder)
    missing = []  # folders this probe creates: removed again when the probe fails
    p = folder.absolute()
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".facenhance-probe-", dir=folder)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        for created in missing:
            with contextlib.suppress(OSError):
                created.rmdir()
        raise FacenhanceError(write_error_message(folder, exc)) from None


def check_readable(path: str | os.PathLike[str], what: str = "input") -> None:
    """A one-line InputError when an input file or folder is missing or unreadable."""
    from facenhance_cli.errors import InputError

    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    if not os.access(p, os.R_OK) or (p.is_dir() and not os.access(p, os.X_OK)):
        raise InputError(f"{what} not readable (permission denied): {p}")
    if p.is_file():
        try:
            with open(p, "rb") as f:
                f.read(1)
        except OSError as exc:
            raise InputError(f"{what} not readable ({exc.strerror or exc}): {p}") from None


def read_jsonl(path: str | os.PathLike[str], strict: bool = True) -> list[Any]:
    """The values of a JSON-lines file, blank lines skipped; a line that is not JSON is an InputError naming
    it (`strict`) or is passed over."""
    rows = []
    for line_no, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if strict:
                raise InputError(f"{path}:{line_no} is not valid JSON") from None
    return rows
