"""ARKit-52 weight sequences as files avatar tools read: the Live Link Face CSV and a JSON weight matrix.

**Live Link Face CSV** (what Epic's Live Link Face app exports for a take, and what Unreal's LiveLinkFaceImporter,
Blender add-ons and MetaHuman pipelines read): a header ``Timecode,BlendShapeCount,EyeBlinkLeft,...,TongueOut,
HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll`` with the
names in PascalCase and in the app's column order (:data:`LIVE_LINK_COLUMNS`: Apple's order except that the app
writes ``JawRight`` before ``JawLeft`` and ``MouthRight`` before ``MouthLeft``), then one row per frame:
the timecode ``HH:MM:SS:FF.sss`` (``FF`` the frame within the second at the take's rate, ``.sss`` the sub-frame),
``BlendShapeCount`` = 61 (52 shapes and 9 rotations), the 52 weights in [0, 1] and the head and eye rotations.
``talk`` has no head or eye rotation in its motion, so it writes those nine columns as 0.

**JSON**: the weight-matrix layout of NVIDIA Audio2Face's blendshape export, which importers for Unreal, Blender
and Unity already read: ``{"exportFps", "numPoses", "numFrames", "facsNames", "weightMat"}`` with ``facsNames`` the
ARKit camelCase names and ``weightMat`` frames x poses.

Both readers accept any of the spellings :func:`motion.face.blendshapes.arkit.name_key` maps to an ARKit name, and
return the weights in :data:`~motion.face.blendshapes.arkit.ARKIT_NAMES` order.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from motion.face.blendshapes.arkit import ARKIT_NAMES, arkit_name
from motion.face.blendshapes.errors import RigFormatError, RigNotFoundError
from talk.files import write_text_atomic

__all__ = [
    "LIVE_LINK_COLUMNS",
    "LIVE_LINK_ROTATIONS",
    "WeightTrack",
    "read_live_link_csv",
    "read_weights_json",
    "write_live_link_csv",
    "write_weights_json",
]

LIVE_LINK_ROTATIONS = (
    "HeadYaw",
    "HeadPitch",
    "HeadRoll",
    "LeftEyeYaw",
    "LeftEyePitch",
    "LeftEyeRoll",
    "RightEyeYaw",
    "RightEyePitch",
    "RightEyeRoll",
)


def _pascal(name: str) -> str:
    return name[0].upper() + name[1:]


def _app_order() -> tuple[str, ...]:
    names = [_pascal(n) for n in ARKIT_NAMES]
    for left, right in (("JawLeft", "JawRight"), ("MouthLeft", "MouthRight")):
        i, j = names.index(left), names.index(right)
        names[i], names[j] = names[j], names[i]
    return tuple(names)


LIVE_LINK_COLUMNS: tuple[str, ...] = _app_order()  # the 52 weight columns, as the app writes them


@dataclass(frozen=True)
class WeightTrack:
    """A weight sequence read from a file: ``weights`` ``[T, 52]`` in ARKit order, at ``fps`` frames per second,
    and the names the file had that are not ARKit targets (ignored)."""

    weights: np.ndarray
    fps: float
    ignored: tuple[str, ...] = ()


def _check(weights: np.ndarray, fps: float, what: str) -> np.ndarray:
    weights = np.asarray(weights, np.float64)
    if weights.ndim != 2 or weights.shape[1] != len(ARKIT_NAMES):
        raise ValueError(f"{what}: weights must be [T, 52] in ARKit order, got shape {weights.shape}.")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"{what}: fps must be a positive number, got {fps}.")
    return weights


def _timecode(frame: int, fps: float) -> str:
    seconds = frame / fps
    whole = math.floor(seconds + 1e-9)
    within = (seconds - whole) * fps  # frames within the second: an integer for exact frames
    frame_in_second = math.floor(within + 1e-6)
    sub = max(0.0, within - frame_in_second)
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{frame_in_second:02d}.{round(sub * 1000) % 1000:03d}"


def write_live_link_csv(path: str | Path, weights: np.ndarray, fps: float) -> Path:
    """Write ``weights`` ``[T, 52]`` (ARKit order, clipped to [0, 1]) as a Live Link Face CSV (atomically).

    Args:
        path: The ``.csv`` to write.
        weights: The weights, frames x ARKit targets.
        fps: The frame rate of the sequence (the timecodes count frames at it).
    """
    weights = np.clip(_check(weights, fps, "write_live_link_csv"), 0.0, 1.0)
    order = [ARKIT_NAMES.index(n[0].lower() + n[1:]) for n in LIVE_LINK_COLUMNS]
    lines = [",".join(("Timecode", "BlendShapeCount", *LIVE_LINK_COLUMNS, *LIVE_LINK_ROTATIONS))]
    count = str(len(LIVE_LINK_COLUMNS) + len(LIVE_LINK_ROTATIONS))
    zeros = ["0"] * len(LIVE_LINK_ROTATIONS)
    for t, row in enumerate(weights):
        lines.append(",".join((_timecode(t, fps), count, *(f"{row[k]:.6f}" for k in order), *zeros)))
    return write_text_atomic(Path(path), "\n".join(lines) + "\n")


def _seconds(timecode: str, fps: float) -> float:
    hms, _, sub = timecode.partition(".")
    h, m, s, f = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s + (f + float(f"0.{sub}" if sub else 0.0)) / fps


def read_live_link_csv(path: str | Path, fps: float = 60.0) -> WeightTrack:
    """Read a Live Link Face CSV: the 52 weights (any column order and name spelling), resampled to a uniform
    ``fps`` when the timecodes are (the app records at 60 fps by default; pass its rate when it was 30).

    The weight at frame ``t`` is the row whose timecode is nearest ``t / fps`` from the first row; rotations
    and unknown columns are ignored (their names are listed in :attr:`WeightTrack.ignored`).
    """
    path = Path(path)
    if not path.is_file():
        raise RigNotFoundError(f"weight file {path} not found.")
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if not rows or [c.strip().lower() for c in rows[0][:1]] != ["timecode"]:
        raise RigFormatError(
            f"{path} is not a Live Link Face CSV (its first column must be Timecode); export the take as CSV."
        )
    header = [c.strip() for c in rows[0]]
    columns: dict[int, int] = {}
    ignored = []
    for c, name in enumerate(header[2:], start=2):
        canonical = arkit_name(name)
        if canonical is None:
            if name not in LIVE_LINK_ROTATIONS:
                ignored.append(name)
            continue
        columns[c] = ARKIT_NAMES.index(canonical)
    if not columns:
        raise RigFormatError(
            f"{path} has no ARKit blendshape columns (its header: {', '.join(header[:6])}, ...)."
        )
    try:
        times = np.array([_seconds(row[0].strip(), fps) for row in rows[1:]])
        values = np.zeros((len(rows) - 1, len(ARKIT_NAMES)))
        for i, row in enumerate(rows[1:]):
            for c, k in columns.items():
                values[i, k] = float(row[c])
    except (ValueError, IndexError) as err:
        raise RigFormatError(f"{path}: a row could not be read ({err}); is the file complete?") from None
    if len(times) == 0:
        return WeightTrack(values, fps, tuple(ignored))
    frames = int(round((times[-1] - times[0]) * fps)) + 1
    nearest = np.abs(times[None, :] - (times[0] + np.arange(frames)[:, None] / fps)).argmin(axis=1)
    return WeightTrack(values[nearest], fps, tuple(ignored))


def write_weights_json(path: str | Path, weights: np.ndarray, fps: float) -> Path:
    """Write ``weights`` ``[T, 52]`` (ARKit order, clipped to [0, 1]) as JSON (see the module docstring)."""
    weights = np.clip(_check(weights, fps, "write_weights_json"), 0.0, 1.0)
    document = {
        "exportFps": float(fps),
        "numPoses": len(ARKIT_NAMES),
        "numFrames": int(weights.shape[0]),
        "facsNames": list(ARKIT_NAMES),
        "weightMat": [[round(float(w), 6) for w in row] for row in weights],
    }
    return write_text_atomic(Path(path), json.dumps(document) + "\n")


def read_weights_json(path: str | Path) -> WeightTrack:
    """Read a JSON weight matrix written by :func:`write_weights_json` or by Audio2Face's blendshape export."""
    path = Path(path)
    if not path.is_file():
        raise RigNotFoundError(f"weight file {path} not found.")
    try:
        document = json.loads(path.read_text())
        names, matrix, fps = document["facsNames"], document["weightMat"], float(document["exportFps"])
        matrix = np.asarray(matrix, np.float64).reshape(len(matrix), len(names))
    except (ValueError, KeyError, TypeError) as err:
        raise RigFormatError(
            f"{path} is not a blendshape weight JSON with facsNames, weightMat and exportFps ({err})."
        ) from None
    weights = np.zeros((matrix.shape[0], len(ARKIT_NAMES)))
    ignored = []
    for j, name in enumerate(names):
        canonical = arkit_name(str(name))
        if canonical is None:
            ignored.append(str(name))
        else:
            weights[:, ARKIT_NAMES.index(canonical)] = matrix[:, j]
    return WeightTrack(weights, fps, tuple(ignored))
