"""Numba kernels of the CPU z-buffer rasterizer (internal; use :func:`render.rasterizer.rasterize`).

Scan conversion is exact: vertex positions are snapped to a fixed-point grid of 1/256 pixel and edge functions
are evaluated in int64, so an edge shared by two triangles yields exactly opposite values for both. With the
top-left fill rule (a pixel centre lying exactly on an edge belongs to the triangle only if that edge is a top or
left edge) every pixel centre inside a closed mesh is covered exactly once: no cracks, no double hits.

Three passes: :func:`setup_faces` (snap, orient, cull, bounding box per face), :func:`bin_faces`
(faces -> horizontal bands of rows they overlap) and :func:`raster_bands` (parallel over (image, band) pairs:
visibility with a band-local z-buffer, then a per-pixel resolve of depth and barycentrics). Bands never share
pixels, so there are no write races, and results do not depend on the number of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

SUBPIXEL_BITS = 8
SUB = 1 << SUBPIXEL_BITS  # fixed-point units per pixel
HALF = SUB // 2  # pixel centre offset in fixed point
# Vertices further than this many pixels from the origin are not representable without int64 overflow in
# the edge functions (2 * 2^21 * 2^8 = 2^30 per difference, products stay below 2^62); such faces are dropped.
MAX_ABS_PIXEL = float(1 << 21)


@njit(cache=True, inline="always")
def _is_top_left(ax: np.int64, ay: np.int64, bx: np.int64, by: np.int64) -> bool:
    # For triangles normalised to positive area in y-down image coordinates, the interior lies to the right of
    # a->b on screen: a "left" edge goes up (dy < 0), a "top" edge is horizontal and goes +x.
    dy = by - ay
    return dy < 0 or (dy == 0 and bx - ax > 0)


@njit(cache=True, error_model="numpy")  # serial: ~50 ns per face, less than a parallel launch and its compile
def setup_faces(
    uvz, faces, height, width, cull_backfaces, perspective, znear, fixed, keys, inv_area, bbox, flags
):  # pragma: no cover
    """Per-face triangle setup.

    Args:
        uvz: ``[B,V,3]`` float64 (u, v, depth) per vertex.
        faces: ``[F,3]`` int64 vertex indices.
        height, width: image size.
        cull_backfaces: drop faces whose projected winding is clockwise as seen by the camera.
        perspective: depth keys are ``-1/depth`` (affine in screen space under perspective) instead of depth.
        znear: faces with any vertex at depth <= znear are dropped (no clipping).
        fixed: out ``[B,F,6]`` int64 snapped x0,y0,x1,y1,x2,y2 in positive-area order.
        keys: out ``[B,F,3]`` float64 per-vertex depth key in the same order (smaller is nearer).
        inv_area: out ``[B,F]`` float64 1 / (twice the fixed-point area).
        bbox: out ``[B,F,4]`` int64 inclusive pixel bbox (col_min, col_max, row_min, row_max).
        flags: out ``[B,F]`` int8: 0 skipped, 1 drawn front facing, 2 drawn back facing. Front-facing faces
            are stored with vertices 1 and 2 swapped.
    """
    n_batch = uvz.shape[0]
    n_faces = faces.shape[0]
    for t in range(n_batch * n_faces):
        b = t // n_faces
        f = t - b * n_faces
        flags[b, f] = 0
        i0 = faces[f, 0]
        i1 = faces[f, 1]
        i2 = faces[f, 2]
        ok = True
        for i in (i0, i1, i2):
            u = uvz[b, i, 0]
            v = uvz[b, i, 1]
            z = uvz[b, i, 2]
            if not (z > znear) or not (abs(u) < MAX_ABS_PIXEL) or not (abs(v) < MAX_ABS_PIXEL):
                ok = False  # also rejects NaN
        if not ok:
            continue
        x0 = np.int64(math.floor(uvz[b, i0, 0] * SUB + 0.5))
        y0 = np.int64(math.floor(uvz[b, i0, 1] * SUB + 0.5))
        x1 = np.int64(math.floor(uvz[b, i1, 0] * SUB + 0.5))
        y1 = np.int64(math.floor(uvz[b, i1, 1] * SUB + 0.5))
        x2 = np.int64(math.floor(uvz[b, i2, 0] * SUB + 0.5))
        y2 = np.int64(math.floor(uvz[b, i2, 1] * SUB + 0.5))
        area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
        if area == 0:
            continue
        # In y-down image coordinates a counter-clockwise (front-facing, OpenGL convention) triangle has
        # negative area; swap two vertices so that every stored triangle has positive area.
        front = area < 0
        if cull_backfaces and not front:
            continue
        z0 = uvz[b, i0, 2]
        z1 = uvz[b, i1, 2]
        z2 = uvz[b, i2, 2]
        if front:
            x1, x2 = x2, x1
            y1, y2 = y2, y1
            z1, z2 = z2, z1
        c_lo = max(-((HALF - min(x0, min(x1, x2))) // SUB), 0)  # first pixel centre >= min (ceil division)
        c_hi = min((max(x0, max(x1, x2)) - HALF) // SUB, width - 1)  # last centre <= max
        r_lo = max(-((HALF - min(y0, min(y1, y2))) // SUB), 0)
        r_hi = min((max(y0, max(y1, y2)) - HALF) // SUB, height - 1)
        if c_lo > c_hi or r_lo > r_hi:
            continue
        fixed[b, f, 0] = x0
        fixed[b, f, 1] = y0
        fixed[b, f, 2] = x1
        fixed[b, f, 3] = y1
        fixed[b, f, 4] = x2
        fixed[b, f, 5] = y2
        if perspective:
            keys[b, f, 0] = -1.0 / z0
            keys[b, f, 1] = -1.0 / z1
            keys[b, f, 2] = -1.0 / z2
        else:
            keys[b, f, 0] = z0
            keys[b, f, 1] = z1
            keys[b, f, 2] = z2
        inv_area[b, f] = 1.0 / float(abs(area))
        bbox[b, f, 0] = c_lo
        bbox[b, f, 1] = c_hi
        bbox[b, f, 2] = r_lo
        bbox[b, f, 3] = r_hi
        flags[b, f] = 1 if front else 2


@njit(cache=True)
def bin_faces(bbox, flags, band_height, n_bands):  # pragma: no cover
    """CSR lists of the faces overlapping each band, in increasing face order (keeps depth ties deterministic).

    Returns:
        ``offsets`` ``[B, NB+1]`` int64 and ``items`` ``[total]`` int64: band ``k`` of image ``b`` draws faces
        ``items[offsets[b, k]:offsets[b, k+1]]``.
    """
    n_batch, n_faces = flags.shape
    offsets = np.zeros((n_batch, n_bands + 1), np.int64)
    total = 0
    for b in range(n_batch):
        offsets[b, 0] = total
        counts = np.zeros(n_bands, np.int64)
        for f in range(n_faces):
            if flags[b, f] != 0:
                for k in range(bbox[b, f, 2] // band_height, bbox[b, f, 3] // band_height + 1):
                    counts[k] += 1
        for k in range(n_bands):
            total += counts[k]
            offsets[b, k + 1] = total
    items = np.empty(total, np.int64)
    for b in range(n_batch):
        cursor = offsets[b, :n_bands].copy()
        for f in range(n_faces):
            if flags[b, f] != 0:
                for k in range(bbox[b, f, 2] // band_height, bbox[b, f, 3] // band_height + 1):
                    items[cursor[k]] = f
                    cursor[k] += 1
    return offsets, items


@njit(cache=True, inline="always")
def _corners(fixed, b, f):  # pragma: no cover
    # the snapped corners x0, y0, x1, y1, x2, y2 of face f of image b
    return fixed[b, f, 0], fixed[b, f, 1], fixed[b, f, 2], fixed[b, f, 3], fixed[b, f, 4], fixed[b, f, 5]


@njit(cache=True, error_model="numpy", inline="always")
def band_visibility(fixed, keys, inv_area, bbox, offsets, items, b, band, band_lo, band_hi, width):  # pragma: no cover
    """The nearest face of every pixel of rows ``band_lo..band_hi`` of image ``b`` (band ``band`` of
    :func:`bin_faces`): ``best`` ``[rows, W]`` float64 depth keys and ``ids`` ``[rows, W]`` int64 face ids (-1 where
    empty). The key is affine in screen space, so the inner loop is three integer edge steps, one float add and a
    compare. Band-local buffers stay in cache while every face of the band is drawn."""
    best = np.full((band_hi - band_lo + 1, width), np.inf)
    ids = np.full((band_hi - band_lo + 1, width), -1, np.int64)
    for item in range(offsets[b, band], offsets[b, band + 1]):
        f = items[item]
        r_lo = max(bbox[b, f, 2], band_lo)
        r_hi = min(bbox[b, f, 3], band_hi)
        c_lo = bbox[b, f, 0]
        c_hi = bbox[b, f, 1]
        x0, y0, x1, y1, x2, y2 = _corners(fixed, b, f)
        # Edge k is opposite vertex k; e_k(p) = (b - a) x (p - a) is vertex k's unnormalised weight.
        bias0 = 0 if _is_top_left(x1, y1, x2, y2) else 1
        bias1 = 0 if _is_top_left(x2, y2, x0, y0) else 1
        bias2 = 0 if _is_top_left(x0, y0, x1, y1) else 1
        step0 = -(y2 - y1) * SUB
        step1 = -(y0 - y2) * SUB
        step2 = -(y1 - y0) * SUB
        k0 = keys[b, f, 0] * inv_area[b, f]
        k1 = keys[b, f, 1] * inv_area[b, f]
        k2 = keys[b, f, 2] * inv_area[b, f]
        key_step = step0 * k0 + step1 * k1 + step2 * k2
        px = c_lo * SUB + HALF
        for r in range(r_lo, r_hi + 1):
            py = r * SUB + HALF
            e0 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
            e1 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)
            e2 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
            key = e0 * k0 + e1 * k1 + e2 * k2
            row = r - band_lo
            for c in range(c_lo, c_hi + 1):
                if (e0 - bias0) | (e1 - bias1) | (e2 - bias2) >= 0 and key < best[row, c]:
                    best[row, c] = key
                    ids[row, c] = f
                e0 += step0
                e1 += step1
                e2 += step2
                key += key_step
    return best, ids


@njit(cache=True, error_model="numpy", inline="always")
def pixel_weights(fixed, keys, inv_area, flags, b, f, r, c, perspective):  # pragma: no cover
    """Depth and barycentrics ``(z, w0, w1, w2)`` (float64; perspective-correct when ``perspective``, w.r.t. the
    face's original vertex order) of face ``f`` of image ``b`` at the centre of pixel ``(r, c)``."""
    x0, y0, x1, y1, x2, y2 = _corners(fixed, b, f)
    px = c * SUB + HALF
    py = r * SUB + HALF
    scale = inv_area[b, f]
    w0 = ((x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)) * scale
    w1 = ((x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)) * scale
    w2 = ((x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)) * scale
    if perspective:
        # screen weights * (1/depth_k), renormalised: perspective-correct; depth = 1 / sum
        w0 *= -keys[b, f, 0]
        w1 *= -keys[b, f, 1]
        w2 *= -keys[b, f, 2]
        z = 1.0 / (w0 + w1 + w2)
        w0 *= z
        w1 *= z
        w2 *= z
    else:
        z = w0 * keys[b, f, 0] + w1 * keys[b, f, 1] + w2 * keys[b, f, 2]
    if flags[b, f] == 1:  # vertices 1 and 2 were swapped in setup: undo it
        return z, w0, w2, w1
    return z, w0, w1, w2


@njit(parallel=True, cache=True, error_model="numpy")
def raster_bands(
    fixed,
    keys,
    inv_area,
    bbox,
    flags,
    offsets,
    items,
    band_order,
    band_height,
    perspective,
    zbuf,
    face_ids,
    bary,
):  # pragma: no cover
    """Visibility per band (:func:`band_visibility`), then a per-pixel resolve of depth and barycentrics
    (:func:`pixel_weights`), computed once per pixel for the visible face only.

    Args:
        fixed, keys, inv_area, bbox, flags: outputs of :func:`setup_faces`.
        offsets, items: output of :func:`bin_faces`.
        band_order: ``[NB]`` int64 permutation of band indices (interleaved so static scheduling balances).
        band_height: rows per band.
        perspective: keys are ``-1/depth`` (perspective-correct interpolation) rather than depth.
        zbuf: out ``[B,H,W]`` float32 depth, +inf where empty.
        face_ids: out ``[B,H,W]`` int64 face index, -1 where empty.
        bary: out ``[B,H,W,3]`` float32 perspective-correct barycentrics w.r.t. the face's original vertex
            order, 0 where empty.
    """
    n_batch, height, width = zbuf.shape
    n_bands = band_order.shape[0]
    for t in prange(n_batch * n_bands):
        b = t // n_bands
        band = band_order[t - b * n_bands]
        band_lo = band * band_height
        band_hi = min(band_lo + band_height, height) - 1
        _, ids = band_visibility(fixed, keys, inv_area, bbox, offsets, items, b, band, band_lo, band_hi, width)
        for r in range(band_lo, band_hi + 1):
            row = r - band_lo
            for c in range(width):
                f = ids[row, c]
                face_ids[b, r, c] = f
                if f < 0:
                    zbuf[b, r, c] = np.inf
                    bary[b, r, c, 0] = 0.0
                    bary[b, r, c, 1] = 0.0
                    bary[b, r, c, 2] = 0.0
                    continue
                z, w0, w1, w2 = pixel_weights(fixed, keys, inv_area, flags, b, f, r, c, perspective)
                zbuf[b, r, c] = z
                bary[b, r, c, 0] = w0
                bary[b, r, c, 1] = w1
                bary[b, r, c, 2] = w2
