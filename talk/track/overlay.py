"""Drawing on frames: landmark dots for tracking previews (numpy only)."""

from __future__ import annotations

import numpy as np

__all__ = ["draw_points"]


def draw_points(
    images: np.ndarray, points: np.ndarray, color: tuple[int, int, int], radius: int = 1,
    frames: np.ndarray | None = None,
) -> None:  # fmt: skip
    """Draw filled squares of side ``2 radius + 1`` at ``points`` into ``images``, in place.

    Args:
        images: [N, H, W, 3] uint8 (or one image [H, W, 3] with points [P, 2]).
        points: [N, P, 2] (x, y) pixels; points outside the image are skipped.
        color: RGB.
        radius: Half side of each square, pixels.
        frames: [N] bool, the frames to draw in (default: all).
    """
    if images.ndim == 3:
        draw_points(images[None], np.asarray(points)[None], color, radius)
        return
    n, h, w = images.shape[:3]
    xy = np.round(np.asarray(points, np.float64)[..., :2]).astype(np.int64)  # [N, P, 2]
    k = np.broadcast_to(np.arange(n)[:, None], xy.shape[:2])
    keep = (xy[..., 0] >= 0) & (xy[..., 0] < w) & (xy[..., 1] >= 0) & (xy[..., 1] < h)
    if frames is not None:
        keep &= np.asarray(frames, bool)[:, None]
    k, x0, y0 = k[keep], xy[..., 0][keep], xy[..., 1][keep]
    offsets = np.arange(-radius, radius + 1)
    x = np.clip(x0[:, None, None] + offsets[None, None, :], 0, w - 1)
    y = np.clip(y0[:, None, None] + offsets[None, :, None], 0, h - 1)
    images[np.broadcast_to(k[:, None, None], x.shape[:1] + (len(offsets),) * 2), y, x] = color
