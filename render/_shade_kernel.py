"""Numba kernel that interpolates normals / colours at covered pixels and shades them (internal).

It is the fast forward path of :class:`render.rasterizer.TorchRasterizer` and computes exactly the formulas of
:func:`render.shading.lambert` and :func:`render.shading.blinn_phong` on :func:`render.shading.interpolate`d
attributes (a test keeps the two in agreement). The torch versions stay the reference and the differentiable
path; this one fuses the per-pixel gathers, which cost several times the rasterization itself in torch.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

MODE_PHONG = 0
MODE_LAMBERT = 1
MODE_NORMALS = 2


@njit(cache=True, inline="always")
def _power(x: float, exponent: float, integer_exponent: int) -> float:
    # libm pow costs ~50 ns; the usual integral Blinn exponents go through a few multiplications instead.
    if integer_exponent < 0:
        return x**exponent
    result = 1.0
    n = integer_exponent
    while n:
        if n & 1:
            result *= x
        x *= x
        n >>= 1
    return result


@njit(cache=True, error_model="numpy", inline="always")
def shade_pixel(
    w0, w1, w2, i0, i1, i2, b, cb, front, row, col, normals, colors, albedo, mode, light, ambient, specular,
    shininess, integer_exponent, orthographic, focal, cx, cy,
):  # pragma: no cover
    """RGB in [0, 1] (float64) of pixel ``(row, col)`` of image ``b``, covered by the face of vertices ``i0, i1,
    i2`` with float32 barycentrics ``w0, w1, w2``; arguments as :func:`shade_pixels` takes them, plus ``cb`` (the
    colour batch index), ``front`` (the face is seen from its front side) and ``integer_exponent`` (the shininess
    if it is a small integer, else -1)."""
    nx = w0 * normals[b, i0, 0] + w1 * normals[b, i1, 0] + w2 * normals[b, i2, 0]
    ny = w0 * normals[b, i0, 1] + w1 * normals[b, i1, 1] + w2 * normals[b, i2, 1]
    nz = w0 * normals[b, i0, 2] + w1 * normals[b, i1, 2] + w2 * normals[b, i2, 2]
    norm = math.sqrt(nx * nx + ny * ny + nz * nz)
    scale = 1.0 / max(norm, 1e-12)
    if not front:
        scale = -scale
    nx *= scale
    ny *= scale
    nz *= scale
    if mode == MODE_NORMALS:
        r = nx * 0.5 + 0.5
        g = ny * 0.5 + 0.5
        bl = nz * 0.5 + 0.5
    else:
        if colors.shape[0] > 0:
            ar = w0 * colors[cb, i0, 0] + w1 * colors[cb, i1, 0] + w2 * colors[cb, i2, 0]
            ag = w0 * colors[cb, i0, 1] + w1 * colors[cb, i1, 1] + w2 * colors[cb, i2, 1]
            ab = w0 * colors[cb, i0, 2] + w1 * colors[cb, i1, 2] + w2 * colors[cb, i2, 2]
        else:
            ar = albedo[0]
            ag = albedo[1]
            ab = albedo[2]
        n_dot_l = nx * light[0] + ny * light[1] + nz * light[2]
        k = ambient + (1.0 - ambient) * max(n_dot_l, 0.0)
        spec = 0.0
        if mode == MODE_PHONG and n_dot_l > 0.0:
            if orthographic:
                vx, vy, vz = 0.0, 0.0, 1.0
            else:
                vx = -(col + 0.5 - cx) / focal[b]
                vy = (row + 0.5 - cy) / focal[b]
                vz = 1.0
                inv = 1.0 / math.sqrt(vx * vx + vy * vy + 1.0)
                vx *= inv
                vy *= inv
                vz = inv
            hx = vx + light[0]
            hy = vy + light[1]
            hz = vz + light[2]
            inv = 1.0 / max(math.sqrt(hx * hx + hy * hy + hz * hz), 1e-12)
            n_dot_h = max((nx * hx + ny * hy + nz * hz) * inv, 0.0)
            spec = specular * _power(n_dot_h, shininess, integer_exponent)
        r = ar * k + spec
        g = ag * k + spec
        bl = ab * k + spec
    return min(max(r, 0.0), 1.0), min(max(g, 0.0), 1.0), min(max(bl, 0.0), 1.0)


def exponent_of(shininess: float) -> int:
    """The ``integer_exponent`` of :func:`shade_pixel`: the shininess if it is an integer in [0, 1024], else -1."""
    return int(shininess) if shininess == int(shininess) and 0 <= shininess <= 1024 else -1


@njit(parallel=True, cache=True, error_model="numpy")
def shade_pixels(
    face_ids,
    bary,
    faces,
    normals,
    colors,
    albedo,
    front,
    mode,
    light,
    ambient,
    specular,
    shininess,
    integer_exponent,
    background,
    orthographic,
    focal,
    cx,
    cy,
    image,
):  # pragma: no cover
    """Fill ``image`` ``[B,H,W,4]`` float32 RGBA (:func:`shade_pixel` at every covered pixel).

    Args:
        face_ids: ``[B,H,W]`` int64 visible face, -1 empty.
        bary: ``[B,H,W,3]`` float32 barycentrics.
        faces: ``[F,3]`` int64.
        normals: ``[B,V,3]`` float32 unit vertex normals in camera space.
        colors: ``[Bc,V,3]`` float32 per-vertex albedo (Bc in {1, B}); ignored when its first dim is 0.
        albedo: ``[3]`` float64 constant albedo used without colours.
        front: ``[B,F]`` bool, face seen from its front side (otherwise the normal is flipped).
        mode: MODE_PHONG, MODE_LAMBERT or MODE_NORMALS.
        light: ``[3]`` float64 unit direction towards the light (camera space).
        ambient, specular, shininess: shading constants; ``integer_exponent``: :func:`exponent_of` the shininess.
        background: ``[3]`` float64 RGB of empty pixels (alpha 0).
        orthographic: view direction is +z everywhere instead of towards the pinhole.
        focal: ``[B]`` float64 focal length in pixels.
        cx, cy: principal point in pixels.
        image: out ``[B,H,W,4]`` float32.
    """
    n_batch, height, width = face_ids.shape
    for t in prange(n_batch * height):
        b = t // height
        row = t - b * height
        cb = b if colors.shape[0] > 1 else 0
        for col in range(width):
            f = face_ids[b, row, col]
            if f < 0:
                image[b, row, col, 0] = background[0]
                image[b, row, col, 1] = background[1]
                image[b, row, col, 2] = background[2]
                image[b, row, col, 3] = 0.0
                continue
            r, g, bl = shade_pixel(
                bary[b, row, col, 0], bary[b, row, col, 1], bary[b, row, col, 2], faces[f, 0], faces[f, 1],
                faces[f, 2], b, cb, front[b, f], row, col, normals, colors, albedo, mode, light, ambient, specular,
                shininess, integer_exponent, orthographic, focal, cx, cy,
            )  # fmt: skip
            image[b, row, col, 0] = r
            image[b, row, col, 1] = g
            image[b, row, col, 2] = bl
            image[b, row, col, 3] = 1.0


@njit(cache=True, error_model="numpy")
def composite_uint8(image, background, out):  # pragma: no cover
    """``out[b,i,j] = round(255 * clamp(rgb * alpha + background * (1 - alpha)))`` in one pass.

    Args:
        image: ``[B,H,W,4]`` float32 RGBA.
        background: ``[3]`` float64 RGB.
        out: out ``[B,H,W,3]`` uint8.
    """
    n_batch, height, width = image.shape[:3]
    for b in range(n_batch):
        for i in range(height):
            for j in range(width):
                alpha = image[b, i, j, 3]
                for k in range(3):
                    value = image[b, i, j, k] * alpha + background[k] * (1.0 - alpha)
                    out[b, i, j, k] = np.uint8(min(max(value, 0.0), 1.0) * 255.0 + 0.5)
