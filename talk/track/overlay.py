"""Drawing on frames: landmark dots for tracking previews (numpy only)."""

from __future__ import annotations

import numpy as np

__all__ = ["draw_points"]


def draw_points(image: np.ndarray, points: np.ndarray, color: tuple[int, int, int], radius: int = 1) -> None:
    """Draw filled squares of side ``2 radius + 1`` at ``points`` [N, 2] (x, y pixels) into ``image`` [H, W, 3]
    uint8, in place; points outside the image are skipped."""
    h, w = image.shape[:2]
    xy = np.round(np.asarray(points, np.float64)[:, :2]).astype(np.int64)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    xy = xy[inside]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            x = np.clip(xy[:, 0] + dx, 0, w - 1)
            y = np.clip(xy[:, 1] + dy, 0, h - 1)
            image[y, x] = color
