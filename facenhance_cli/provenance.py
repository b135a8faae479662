"""Which software made a file: the versions recorded in `prepare`'s meta.json and `eval`'s report."""

from __future__ import annotations

import importlib
import platform

MODULES = {"opencv": "cv2"}  # report name -> import name, where they differ


def versions(*libraries: str) -> dict[str, str]:
    """facenhance's version, then each named library's ("python" is the interpreter); one that does not
    import is left out."""
    from facenhance_cli import __version__

    out = {"facenhance": __version__}
    for name in libraries:
        if name == "python":
            out[name] = platform.python_version()
            continue
        try:
            module = importlib.import_module(MODULES.get(name, name))
        except ImportError:
            continue
        out[name] = str(getattr(module, "__version__", "unknown"))
    return out
