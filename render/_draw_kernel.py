"""Numba kernel that rasterizes, shades and quantises frames in one pass (internal; use
:func:`render.raster_core.draw_uint8`).

It is :func:`render._raster_kernel.raster_bands`, :func:`render._shade_kernel.shade_pixels` and
:func:`render._shade_kernel.composite_uint8` fused: the same helpers (:func:`band_visibility`,
:func:`pixel_weights`, :func:`shade_pixel`) with the same roundings (barycentrics and colours pass through float32
as they do when stored), so its frames equal theirs bit for bit (tested), without writing and re-reading the
fragments and the float RGBA image (40 bytes a pixel). For video, where only the frame is wanted.

numba's on-disk cache keys a kernel on its own file only: after editing a helper in ``_raster_kernel.py`` or
``_shade_kernel.py``, touch this file too (or clear ``render/__pycache__``), or this kernel keeps the old helper.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from render._raster_kernel import band_visibility, pixel_weights
from render._shade_kernel import shade_pixel


@njit(cache=True, inline="always")
def _quantise(value: float) -> np.uint8:
    # composite_uint8 of a stored float32 channel over alpha 1: float32 -> float64 -> round(255 * clamp)
    return np.uint8(min(max(np.float64(np.float32(value)), 0.0), 1.0) * 255.0 + 0.5)


@njit(parallel=True, cache=True, error_model="numpy")
def draw_bands(
    fixed, keys, inv_area, bbox, flags, offsets, items, band_order, band_height, perspective, faces, normals,
    colors, albedo, mode, light, ambient, specular, shininess, integer_exponent, orthographic, background, focal, cx, cy, out,
):  # pragma: no cover
    """Fill ``out`` ``[B,H,W,3]`` uint8: the arguments mean what they mean to :func:`render._raster_kernel.raster_bands`
    (its outputs excepted) and to :func:`render._shade_kernel.shade_pixels` (the fragments excepted), in this
    order."""
    n_batch, height, width = out.shape[:3]
    n_bands = band_order.shape[0]
    empty = np.empty(3, np.uint8)  # composite_uint8 of alpha 0: the background itself
    for k in range(3):
        empty[k] = np.uint8(min(max(background[k], 0.0), 1.0) * 255.0 + 0.5)
    for t in prange(n_batch * n_bands):
        b = t // n_bands
        band = band_order[t - b * n_bands]
        band_lo = band * band_height
        band_hi = min(band_lo + band_height, height) - 1
        cb = b if colors.shape[0] > 1 else 0
        _, ids = band_visibility(fixed, keys, inv_area, bbox, offsets, items, b, band, band_lo, band_hi, width)
        for r in range(band_lo, band_hi + 1):
            row = r - band_lo
            for c in range(width):
                f = ids[row, c]
                if f < 0:
                    out[b, r, c, 0] = empty[0]
                    out[b, r, c, 1] = empty[1]
                    out[b, r, c, 2] = empty[2]
                    continue
                _, w0, w1, w2 = pixel_weights(fixed, keys, inv_area, flags, b, f, r, c, perspective)
                red, green, blue = shade_pixel(
                    np.float32(w0), np.float32(w1), np.float32(w2), faces[f, 0], faces[f, 1], faces[f, 2], b, cb,
                    flags[b, f] == 1, r, c, normals, colors, albedo, mode, light, ambient, specular, shininess,
                    integer_exponent, orthographic, focal, cx, cy,
                )  # fmt: skip
                out[b, r, c, 0] = _quantise(red)
                out[b, r, c, 1] = _quantise(green)
                out[b, r, c, 2] = _quantise(blue)
