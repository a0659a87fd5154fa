"""Numba kernels of the warp's inference path (internal; use :func:`render.warp.mesh_flow`).

When no gradient is wanted, :func:`render.warp.mesh_flow` runs these instead of the torch code of
:mod:`render.flow`: the same formulas (tested equal to float32 rounding), in serial loops with float64
arithmetic, without torch's per-operation overhead, which dominates at these sizes on a small CPU.

* :func:`pixel_flow`: each covered pixel's backward displacement through its face's homography (the per-pixel
  form of :func:`render.flow.face_maps` and :func:`render.flow.pixel_displacement`).
* :func:`block_means`, :func:`halve`, :func:`push_level`, :func:`double`: the push-pull pyramid of
  :func:`render.flow.extend_pixels` (2x2 means, blends with the bilinear upsampling of ``grid_sample`` /
  ``interpolate``'s ``align_corners=False`` convention).
* :func:`compose`: the final upsampling, the known pixels put back, and the ``grid_sample`` grid, in one pass.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def pixel_flow(face_ids, uvz_a, uvz_n, faces, perspective, disp):  # pragma: no cover
    """Write (du, dv) of every covered pixel into ``disp`` ``[B,2,H,W]`` (left as it is elsewhere).

    ``face_ids`` ``[B,H,W]`` (-1 empty), ``uvz_a`` / ``uvz_n`` ``[B,V,3]`` projections of the animated and neutral
    meshes, ``faces`` ``[F,3]``. Corners relative to each triangle's centroid, homogeneous ``(u z, v z, z)``
    (``z = 1`` orthographic); unnormalised barycentrics ``(a_k+1 x a_k+2) . (x, y, 1)``; the neutral point
    ``sum_k beta_k n_k``, projected by dividing by its third coordinate.
    """
    n_batch, height, width = face_ids.shape
    a = np.empty((3, 3))
    n = np.empty((3, 3))
    h = np.empty(
        (3, 3)
    )  # the current face's map: row r of the neutral point = sum_k n[k, r] adj_k . (x, y, 1)
    for b in range(n_batch):
        last = -1
        cua = cva = shift_u = shift_v = 0.0
        for i in range(height):
            for j in range(width):
                f = face_ids[b, i, j]
                if f < 0:
                    continue
                if f != last:  # neighbouring pixels mostly show the same face: build its map once
                    last = f
                    cua = cva = cun = cvn = 0.0
                    for k in range(3):
                        cua += uvz_a[b, faces[f, k], 0] / 3.0
                        cva += uvz_a[b, faces[f, k], 1] / 3.0
                        cun += uvz_n[b, faces[f, k], 0] / 3.0
                        cvn += uvz_n[b, faces[f, k], 1] / 3.0
                    shift_u, shift_v = cun - cua, cvn - cva
                    for k in range(3):
                        za = uvz_a[b, faces[f, k], 2] if perspective else 1.0
                        zn = uvz_n[b, faces[f, k], 2] if perspective else 1.0
                        a[k, 0] = (uvz_a[b, faces[f, k], 0] - cua) * za
                        a[k, 1] = (uvz_a[b, faces[f, k], 1] - cva) * za
                        a[k, 2] = za
                        n[k, 0] = (uvz_n[b, faces[f, k], 0] - cun) * zn
                        n[k, 1] = (uvz_n[b, faces[f, k], 1] - cvn) * zn
                        n[k, 2] = zn
                    h[:] = 0.0
                    for k in range(3):
                        p, q = (k + 1) % 3, (k + 2) % 3
                        adj0 = a[p, 1] * a[q, 2] - a[p, 2] * a[q, 1]
                        adj1 = a[p, 2] * a[q, 0] - a[p, 0] * a[q, 2]
                        adj2 = a[p, 0] * a[q, 1] - a[p, 1] * a[q, 0]
                        for r in range(3):
                            h[r, 0] += n[k, r] * adj0
                            h[r, 1] += n[k, r] * adj1
                            h[r, 2] += n[k, r] * adj2
                x = j + 0.5 - cua
                y = i + 0.5 - cva
                w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
                disp[b, 0, i, j] = shift_u + (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / w - x
                disp[b, 1, i, j] = shift_v + (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / w - y


@njit(cache=True)
def block_means(disp, mask, half_h, half_w):  # pragma: no cover
    """Level 1 of the pyramid: 2x2 block means ``[B,C+1,h,w]`` of the masked field and of the mask (last)."""
    n_batch, n_chan, height, width = disp.shape
    out = np.zeros((n_batch, n_chan + 1, half_h, half_w))
    for b in range(n_batch):
        for i in range(height):
            for j in range(width):
                if mask[b, i, j]:
                    for c in range(n_chan):
                        out[b, c, i >> 1, j >> 1] += 0.25 * disp[b, c, i, j]
                    out[b, n_chan, i >> 1, j >> 1] += 0.25
    return out


@njit(cache=True)
def halve(x):  # pragma: no cover
    """2x2 block means of ``[B,C,2h,2w]``."""
    n_batch, n_chan, height, width = x.shape
    out = np.empty((n_batch, n_chan, height // 2, width // 2))
    for b in range(n_batch):
        for c in range(n_chan):
            for i in range(height // 2):
                for j in range(width // 2):
                    out[b, c, i, j] = 0.25 * (
                        x[b, c, 2 * i, 2 * j]
                        + x[b, c, 2 * i + 1, 2 * j]
                        + x[b, c, 2 * i, 2 * j + 1]
                        + x[b, c, 2 * i + 1, 2 * j + 1]
                    )
    return out


@njit(cache=True)
def _axis(n_out, n_in):  # pragma: no cover
    """Bilinear 2x upsampling (``align_corners=False``) along one axis: for each output index, the two input
    indices it reads and the weight of the second."""
    first = np.empty(n_out, np.int64)
    second = np.empty(n_out, np.int64)
    weight = np.empty(n_out)
    for o in range(n_out):
        s = max((o + 0.5) * 0.5 - 0.5, 0.0)
        first[o] = int(s)
        second[o] = min(first[o] + 1, n_in - 1)
        weight[o] = s - first[o]
    return first, second, weight


@njit(cache=True, inline="always")
def _bilinear(x, b, c, i0, i1, ty, j0, j1, tx):  # pragma: no cover
    top = x[b, c, i0, j0] + tx * (x[b, c, i0, j1] - x[b, c, i0, j0])
    bottom = x[b, c, i1, j0] + tx * (x[b, c, i1, j1] - x[b, c, i1, j0])
    return top + ty * (bottom - top)


@njit(cache=True)
def double(x):  # pragma: no cover
    """Bilinear 2x upsampling of ``[B,C,h,w]``, as ``interpolate(scale_factor=2, align_corners=False)``."""
    n_batch, n_chan, height, width = x.shape
    r0, r1, ty = _axis(2 * height, height)
    c0, c1, tx = _axis(2 * width, width)
    out = np.empty((n_batch, n_chan, 2 * height, 2 * width))
    for b in range(n_batch):
        for c in range(n_chan):
            for i in range(2 * height):
                for j in range(2 * width):
                    out[b, c, i, j] = _bilinear(x, b, c, r0[i], r1[i], ty[i], c0[j], c1[j], tx[j])
    return out


@njit(cache=True)
def push_level(level, coarser, trust):  # pragma: no cover
    """One push step: ``level / max(w, trust) + (1 - min(1, w / trust)) up(coarser)`` (coverage w last);
    ``coarser`` of size 0 is the top of the pyramid (nothing above)."""
    n_batch, n_chan, height, width = level.shape
    r0, r1, ty = _axis(height, max(coarser.shape[2], 1))
    c0, c1, tx = _axis(width, max(coarser.shape[3], 1))
    out = np.empty_like(level)
    for b in range(n_batch):
        for i in range(height):
            for j in range(width):
                cover = level[b, n_chan - 1, i, j]
                scale = 1.0 / max(cover, trust)
                rest = 1.0 - min(cover / trust, 1.0)
                for c in range(n_chan):
                    value = level[b, c, i, j] * scale
                    if coarser.shape[2] > 0 and rest > 0.0:
                        value += rest * _bilinear(coarser, b, c, r0[i], r1[i], ty[i], c0[j], c1[j], tx[j])
                    out[b, c, i, j] = value
    return out


@njit(cache=True, error_model="numpy")
def compose(disp, mask, outside, displacement, grid):  # pragma: no cover
    """Full resolution: ``disp`` on the mask, the 2x upsampling of ``outside`` (level 1) elsewhere, written to
    ``displacement`` ``[B,2,H,W]`` and to ``grid`` ``[B,H,W,2]`` (``grid_sample``, ``align_corners=False``)."""
    n_batch, _, height, width = disp.shape
    r0, r1, ty = _axis(height, max(outside.shape[2], 1))
    c0, c1, tx = _axis(width, max(outside.shape[3], 1))
    for b in range(n_batch):
        for i in range(height):
            for j in range(width):
                if mask[b, i, j]:
                    du, dv = disp[b, 0, i, j], disp[b, 1, i, j]
                elif outside.shape[2] > 0:
                    du = _bilinear(outside, b, 0, r0[i], r1[i], ty[i], c0[j], c1[j], tx[j])
                    dv = _bilinear(outside, b, 1, r0[i], r1[i], ty[i], c0[j], c1[j], tx[j])
                else:
                    du = dv = 0.0
                displacement[b, 0, i, j] = du
                displacement[b, 1, i, j] = dv
                grid[b, i, j, 0] = (j + 0.5 + du) * (2.0 / width) - 1.0
                grid[b, i, j, 1] = (i + 0.5 + dv) * (2.0 / height) - 1.0
