"""Mouth synchrony of generated portrait frames, measured without any learned weights.

Does the mouth painted in the frames open and close with the motion that drove them? Per clip:

- **aperture** ``a_t``: the pixels of frame ``t`` that show the mouth interior in the render of the driving mesh
  (the ``mouth_mask`` the generator is conditioned on: the motion model's lip gap, as the camera sees it), as a
  fraction of the mouth box;
- **mouth darkness** ``o_t``: the mean of ``1 - luma`` (Rec. 601) of the frame over the mouth box: an open mouth
  shows the dark cavity between the lips, a closed one shows lips and skin;
- the **mouth box** is the bounding box of the union of the clip's mouth masks, widened by 20% of its size on every
  side (as the identity check of the portrait path widens the fitted mouth landmarks' box), the same for all frames.

``mouth_sync`` is Pearson's correlation between ``o`` and ``a`` over the clip's frames, pooled as the mean over the
clips where both vary (a clip whose mouth never opens, or frames that never change, as copying the reference, has
no correlation: NaN, left out of the mean; the pooled figure is NaN when no clip has one). Ground-truth frames score
high (the cavity is dark where the mesh opens the mouth); a generator that ignores the conditioning scores near 0.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch
from torch import Tensor

from talk.lipsync import pearson as lipsync_pearson

__all__ = ["MouthSync", "mouth_box", "pearson"]

MARGIN = 0.2  # of the box size, on every side
LUMA = (0.299, 0.587, 0.114)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r (:func:`talk.lipsync.pearson`), NaN when either series is constant or has fewer than 3 values
    (two frames always correlate perfectly)."""
    return math.nan if len(x) < 3 else lipsync_pearson(np.asarray(x, np.float64), np.asarray(y, np.float64))


def mouth_box(masks: np.ndarray, margin: float = MARGIN) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` of the union of ``masks`` ``[T, H, W]`` bool, widened by ``margin`` of its size on every
    side and clipped to the image; None when no mask has a pixel."""
    union = masks.any(axis=0)
    ys, xs = np.nonzero(union)
    if len(ys) == 0:
        return None
    h, w = union.shape
    dy, dx = (ys.max() - ys.min() + 1) * margin, (xs.max() - xs.min() + 1) * margin
    y0, y1 = max(0, int(ys.min() - dy)), min(h, int(math.ceil(ys.max() + 1 + dy)))
    x0, x1 = max(0, int(xs.min() - dx)), min(w, int(math.ceil(xs.max() + 1 + dx)))
    return y0, y1, x0, x1


class MouthSync:
    """Accumulates frames of clips and computes ``mouth_sync`` per clip and pooled (module docstring)."""

    def __init__(self) -> None:
        self._frames: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)

    def update(self, images: Tensor, mouth_masks: Tensor, names: list[str], frames: list[int]) -> None:
        """Adds frames ``[B, 3, H, W]`` in [0, 1] with their driving mouth masks ``[B, 1, H, W]``."""
        weights = torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)
        dark = (1.0 - (images.detach().float().cpu().clamp(0, 1) * weights).sum(dim=1)).numpy()  # [B, H, W]
        masks = (mouth_masks.detach().cpu()[:, 0] > 0.5).numpy()
        for b, (name, frame) in enumerate(zip(names, frames, strict=True)):
            self._frames[name][int(frame)] = (dark[b].astype(np.float16), masks[b])

    def clips(self) -> dict[str, float]:
        """``mouth_sync`` of every clip (NaN where it has none)."""
        out = {}
        for name, frames in sorted(self._frames.items()):
            order = sorted(frames)
            dark = np.stack([frames[t][0] for t in order]).astype(np.float32)
            masks = np.stack([frames[t][1] for t in order])
            box = mouth_box(masks)
            if box is None:
                out[name] = math.nan
                continue
            y0, y1, x0, x1 = box
            area = (y1 - y0) * (x1 - x0)
            aperture = masks[:, y0:y1, x0:x1].sum(axis=(1, 2)) / area
            darkness = dark[:, y0:y1, x0:x1].mean(axis=(1, 2))
            out[name] = pearson(darkness, aperture)
        return out

    def compute(self) -> float:
        """Mean ``mouth_sync`` over the clips that have one; NaN when none has."""
        values = [v for v in self.clips().values() if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan
