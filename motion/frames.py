"""Frame-rate conversion of motion sequences: the one resampler every loader and the CLI use."""

from __future__ import annotations

import math

import numpy as np


def resample_frames(x: np.ndarray, source_fps: float, fps: float) -> np.ndarray:
    """Brings ``x [T, ...]`` from ``source_fps`` to ``fps``: a stride for whole ratios (VOCASET's 60 fps read as
    ``[::2]``), else linear interpolation in time; the last output frame never lies past the last input frame."""
    if source_fps == fps:
        return x
    ratio = source_fps / fps
    if abs(ratio - round(ratio)) < 1e-9:
        return x[:: int(round(ratio))]
    n_out = int(math.floor((x.shape[0] - 1) / ratio + 1e-9)) + 1
    pos = np.arange(n_out) * ratio
    lo = np.minimum(np.floor(pos + 1e-9).astype(np.int64), x.shape[0] - 1)
    hi = np.minimum(lo + 1, x.shape[0] - 1)
    w = (pos - lo).clip(0.0, 1.0).reshape(-1, *([1] * (x.ndim - 1)))
    return (x[lo] * (1.0 - w) + x[hi] * w).astype(x.dtype)
