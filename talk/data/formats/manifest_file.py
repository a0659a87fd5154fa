"""Reading and validating a jsonl manifest (the line format is described in :mod:`talk.data.formats.manifest`).

Every check that can be made without decoding motion happens here, and every error names the manifest file and
line number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from talk.data.base import SPLITS
from talk.errors import DatasetError

REQUIRED_KEYS = ("audio", "motion", "subject", "fps", "split")
OPTIONAL_KEYS = ("dataset", "name")
# FLAME parameter key -> per-frame width (None: any width); "shape" is per sequence. head_rotation and
# head_translation are the camera-space head pose that `talk track` writes (not decoded into the vertices).
FLAME_KEYS: dict[str, int | None] = {
    "expression": None, "jaw": 3, "neck": 3, "eyes": 6, "global_pose": 3, "head_rotation": 3, "head_translation": 3,
}  # fmt: skip
# per-sequence camera of a tracked video: focal length (px) and image size (H, W)
CAMERA_KEYS: dict[str, tuple[int, ...]] = {"focal": (), "image_size": (2,)}
REQUIRED_FLAME_KEYS = ("expression", "jaw")


class ManifestError(DatasetError):
    """A manifest line or the file it points to is invalid; the message names the manifest and line."""


@dataclass(frozen=True)
class ManifestEntry:
    """One validated manifest line.

    Attributes:
        line: 1-based line number in the manifest.
        name: Unique sequence name.
        subject: Subject (speaker) name.
        split: ``train``, ``val`` or ``test``.
        dataset: Dataset name carried with the batch.
        audio: Absolute audio path.
        motion: Absolute motion path.
        fps: Frame rate of the motion file.
        kind: ``"vertices"`` (``.npy``), ``"flame"`` (``.npz`` of FLAME parameters), ``"arkit"`` (ARKit weights)
            or ``"bfm"`` (BFM coefficients; :mod:`talk.data.formats.coefficients`).
        frames: Frames in the motion file.
        num_vertices: Vertices per frame of a ``.npy`` (None for FLAME parameters).
        shape: FLAME identity coefficients ``[Ns]`` of an ``.npz`` (None when absent or for vertices).
        expression_dim: Expression coefficients of an ``.npz`` (0 for vertices).
    """

    line: int
    name: str
    subject: str
    split: str
    dataset: str
    audio: Path
    motion: Path
    fps: float
    kind: str
    frames: int
    num_vertices: int | None = None
    shape: tuple[float, ...] | None = None
    expression_dim: int = 0


def _check_npy(path: Path, where: str) -> tuple[int, int]:
    try:
        arr = np.load(path, mmap_mode="r")
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Python objects" in str(exc):
            raise ManifestError(
                f"{where}: {path} holds pickled Python objects; save FLAME parameters with np.savez as .npz, "
                "or vertices as a plain float array."
            ) from None
        raise ManifestError(f"{where}: {path} is not a readable .npy file ({exc}).") from None
    except Exception as exc:  # noqa: BLE001
        raise ManifestError(f"{where}: {path} is not a readable .npy file ({exc}).") from None
    ok = arr.ndim == 2 and arr.shape[1] % 3 == 0 or arr.ndim == 3 and arr.shape[2] == 3
    if not ok or arr.shape[0] < 1 or arr.shape[1] < 1 or not np.issubdtype(arr.dtype, np.number):
        raise ManifestError(
            f"{where}: {path} has shape {tuple(arr.shape)} ({arr.dtype}); vertex motion must be a numeric "
            "[T, V*3] or [T, V, 3] array with T >= 1."
        )
    return int(arr.shape[0]), int(arr.shape[1] // 3 if arr.ndim == 2 else arr.shape[1])


def _check_npz(path: Path, where: str) -> tuple[int, tuple[float, ...] | None, int]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            params = {k: np.asarray(npz[k]) for k in npz.files}
    except Exception as exc:  # noqa: BLE001
        raise ManifestError(f"{where}: {path} is not a readable .npz file ({exc}).") from None
    allowed = [*FLAME_KEYS, "shape", *CAMERA_KEYS]
    unknown = sorted(set(params) - set(allowed))
    missing = [k for k in REQUIRED_FLAME_KEYS if k not in params]
    if unknown or missing:
        problem = f"lacks {missing}" if missing else f"has unknown key(s) {unknown}"
        raise ManifestError(
            f"{where}: {path} {problem}; FLAME motion needs expression [T,Ne] and jaw [T,3], optionally "
            "neck [T,3], eyes [T,6], global_pose [T,3], shape [Ns], and a tracked video's head_rotation, "
            "head_translation [T,3], focal [] and image_size [2]."
        )
    frames = params["expression"].shape[0] if params["expression"].ndim == 2 else -1
    for key, width in FLAME_KEYS.items():
        if key not in params:
            continue
        a = params[key]
        if a.ndim != 2 or a.shape[0] != frames or (width is not None and a.shape[1] != width):
            expected = f"[{frames if frames >= 0 else 'T'}, {width if width is not None else 'Ne'}]"
            raise ManifestError(f"{where}: {path} key '{key}' has shape {a.shape}; expected {expected}.")
    if frames < 1:
        raise ManifestError(f"{where}: {path} has no frames (expression shape {params['expression'].shape}).")
    for key, expected_shape in CAMERA_KEYS.items():
        if key in params and params[key].shape != expected_shape:
            raise ManifestError(
                f"{where}: {path} key '{key}' has shape {params[key].shape}; expected {list(expected_shape)}."
            )
    shape = params.get("shape")
    if shape is not None and shape.ndim != 1:
        raise ManifestError(f"{where}: {path} key 'shape' has shape {shape.shape}; expected [Ns].")
    for key, a in params.items():
        if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
            raise ManifestError(f"{where}: {path} key '{key}' is not a finite numeric array.")
    return (
        frames,
        None if shape is None else tuple(float(v) for v in shape),
        int(params["expression"].shape[1]),
    )


def _coefficient_kind(path: Path) -> str | None:
    from talk.data.formats.coefficients import coefficient_kind

    return coefficient_kind(path)


def _coefficient_frames(kind: str, path: Path, fps: float, where: str) -> int:
    from talk.data.formats.coefficients import read_arkit, read_bfm

    return int((read_arkit(path, fps, where) if kind == "arkit" else read_bfm(path, where)).shape[0])


def read_manifest(path: str | Path, default_dataset: str = "manifest") -> list[ManifestEntry]:
    """Parses and validates a jsonl manifest (see the module docstring).

    Args:
        path: The manifest.
        default_dataset: Dataset name of lines without ``"dataset"``.

    Returns:
        One entry per non-empty line.

    Raises:
        ManifestError: naming the manifest file and line of the first invalid line.
    """
    manifest = Path(path)
    if not manifest.is_file():
        raise ManifestError(f"manifest {manifest} not found; pass data.manifest=<file.jsonl>.")
    base = manifest.parent
    entries: list[ManifestEntry] = []
    names: dict[str, int] = {}
    for number, text in enumerate(manifest.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{manifest}:{number}"
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
        if not isinstance(obj, dict):
            raise ManifestError(f"{where}: each line must be a JSON object, got {type(obj).__name__}.")
        missing = [k for k in REQUIRED_KEYS if k not in obj]
        if missing:
            raise ManifestError(f"{where}: missing key(s) {missing}; every line needs {list(REQUIRED_KEYS)}.")
        unknown = sorted(set(obj) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
        if unknown:
            raise ManifestError(
                f"{where}: unknown key(s) {unknown}; allowed are {[*REQUIRED_KEYS, *OPTIONAL_KEYS]}."
            )
        for key in ("audio", "motion", "subject", "split", *[k for k in OPTIONAL_KEYS if k in obj]):
            if not isinstance(obj[key], str) or not obj[key].strip():
                raise ManifestError(f"{where}: '{key}' must be a non-empty string, got {obj[key]!r}.")
        fps = obj["fps"]
        if isinstance(fps, bool) or not isinstance(fps, int | float) or not math.isfinite(fps) or fps <= 0:
            raise ManifestError(f"{where}: 'fps' must be a positive number, got {fps!r}.")
        if obj["split"] not in SPLITS:
            raise ManifestError(f"{where}: 'split' is {obj['split']!r}; use one of {list(SPLITS)}.")
        files = {}
        for key in ("audio", "motion"):
            p = Path(obj[key]).expanduser()
            p = p if p.is_absolute() else base / p
            if not p.is_file():
                raise ManifestError(f"{where}: {key} file {obj[key]} not found (looked for {p}).")
            files[key] = p
        motion = files["motion"]
        if motion.suffix == ".npy":
            frames, n_verts = _check_npy(motion, where)
            extra: dict[str, Any] = {"kind": "vertices", "num_vertices": n_verts}
        elif (kind := _coefficient_kind(motion)) is not None:
            frames = _coefficient_frames(kind, motion, float(fps), where)
            extra = {"kind": kind}
        elif motion.suffix == ".npz":
            frames, shape, n_exp = _check_npz(motion, where)
            extra = {"kind": "flame", "shape": shape, "expression_dim": n_exp}
        else:
            raise ManifestError(
                f"{where}: motion file {obj['motion']} must be .npy (vertices), .npz (FLAME parameters, ARKit "
                "weights or BFM coefficients), .csv / .json (ARKit weights) or .mat (BFM coefficients)."
            )
        name = obj.get("name", motion.stem)
        if name in names:
            raise ManifestError(
                f"{where}: sequence name '{name}' is already used on line {names[name]}; add a unique \"name\"."
            )
        names[name] = number
        entries.append(
            ManifestEntry(
                line=number,
                name=name,
                subject=obj["subject"],
                split=obj["split"],
                dataset=obj.get("dataset", default_dataset),
                audio=files["audio"],
                motion=motion,
                fps=float(fps),
                frames=frames,
                **extra,
            )
        )
    if not entries:
        raise ManifestError(f"manifest {manifest} has no lines; add one JSON object per sequence.")
    return entries
