"""Flow fields on the pixel grid: per-pixel flow from mesh faces, extension off the mesh, grid_sample grids.

* :func:`visible_faces`, :func:`corner_points`, :func:`face_maps`, :func:`pixel_displacement`: from the faces a
  rasterizer saw to each covered pixel's backward displacement (the per-face homography of
  :func:`render.warp.mesh_flow`), in torch, differentiable.
* :func:`extend_pixels` / :func:`extend_displacement`: a field known on some pixels extended smoothly around
  them and faded to exactly zero farther away; :func:`extend_to_grid` is the same without gradients, in
  numpy and numba (:mod:`render._warp_kernel`), several times faster on the CPU.
* :func:`displacement_to_grid`: pixels to ``grid_sample``'s normalised coordinates.

Pixel convention (as :mod:`render.camera`): pixel ``(row i, column j)`` covers ``[j, j+1) x [i, i+1)`` and is
sampled at its centre ``(u, v) = (j + 0.5, i + 0.5)``; a displacement ``[B,2,H,W]`` holds ``(du, dv)`` in pixels
(u right, v down). ``torch.nn.functional.grid_sample`` with ``align_corners=False`` maps the normalised
coordinate -1 to the left edge of the first pixel and +1 to the right edge of the last one, so ``u`` pixels is
``2 u / W - 1``: a pixel centre lands exactly on a sample, and a zero displacement reproduces the image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F_
from scipy import ndimage
from torch import Tensor

__all__ = [
    "corner_points",
    "displacement_to_grid",
    "extend_displacement",
    "extend_pixels",
    "extend_to_grid",
    "face_maps",
    "pixel_centres",
    "pixel_displacement",
    "visible_faces",
]


def pixel_centres(height: int, width: int, dtype: torch.dtype, device: torch.device | None = None) -> Tensor:
    """``[2,H,W]`` pixel-centre coordinates ``(u, v) = (j + 0.5, i + 0.5)``."""
    u = torch.arange(width, dtype=dtype, device=device) + 0.5
    v = torch.arange(height, dtype=dtype, device=device) + 0.5
    return torch.stack([u[None, :].expand(height, width), v[:, None].expand(height, width)])


def displacement_to_grid(displacement: Tensor) -> Tensor:
    """Backward displacement ``[B,2,H,W]`` (pixels) -> ``grid_sample`` grid ``[B,H,W,2]`` (``align_corners=False``).

    Output pixel ``(i, j)`` samples the source image at ``(j + 0.5 + du, i + 0.5 + dv)``.
    """
    _, _, height, width = displacement.shape
    source = pixel_centres(height, width, displacement.dtype, displacement.device) + displacement
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=displacement.dtype, device=displacement.device)
    return (source.permute(0, 2, 3, 1) * scale - 1.0).contiguous()


def visible_faces(face_ids: np.ndarray, n_faces: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Covered pixels and the (frame, face) pairs they show, from the rasterizer's ``[B,H,W]`` face ids.

    Returns:
        ``flat`` [P] index of each covered pixel in ``[B,H,W]``; ``rows`` [P] its pair's position in ``pairs``;
        ``pairs`` [Fv] sorted ``b * F + f`` of the visible pairs (only those get a face map).
    """
    flat = np.flatnonzero(face_ids >= 0)
    keys = face_ids.reshape(-1)[flat] + (flat // (face_ids.shape[1] * face_ids.shape[2])) * n_faces
    present = np.zeros(face_ids.shape[0] * n_faces, dtype=bool)
    present[keys] = True
    rows = (np.cumsum(present) - 1)[keys]
    return flat, rows, np.flatnonzero(present)


def corner_points(animated: Tensor, neutral: Tensor, corners: np.ndarray, frame: np.ndarray) -> Tensor:
    """``[3 corners, 2 meshes (animated, neutral), 3 (u, v, depth), Fv]`` of the faces ``corners`` [Fv,3] of
    frames ``frame`` [Fv], from ``[B,V,3]`` projections (one flat gather)."""
    n_batch, n_verts = animated.shape[:2]
    index = np.arange(6)[None, :, None] * (n_batch * n_verts) + (frame * n_verts + corners.T[:, None, :])
    planes = torch.cat([animated, neutral], dim=-1).permute(2, 0, 1).reshape(-1)  # [6,B,V] flat
    return torch.take(planes, torch.from_numpy(index).to(planes.device)).view(3, 2, 3, -1)


def pixel_displacement(
    points: Tensor, perspective: bool, flat: np.ndarray, rows: np.ndarray, shape: tuple[int, ...]
) -> Tensor:
    """Each covered pixel's displacement through its face's map (:func:`face_maps`): ``[2,P]`` (du, dv) pixels.

    Args:
        points: the visible faces' corners (:func:`corner_points`).
        perspective: False for an orthographic camera.
        flat: ``[P]`` covered pixels, flat in ``[B,H,W]``.
        rows: ``[P]`` each one's face in ``points``.
        shape: ``(B, H, W)``.
    """
    _, height, width = shape
    table = face_maps(points, perspective)  # [13,Fv]
    c = table.index_select(1, torch.from_numpy(rows).to(table.device))
    centres = np.stack([flat % width, flat // width % height]) + 0.5  # (u, v) of the pixel centres
    centres = torch.from_numpy(centres).to(table.device, table.dtype)
    x, y = centres[0] - c[9], centres[1] - c[10]  # relative to the face's animated centroid
    w = c[6] * x + c[7] * y + c[8]
    du = c[11] + (c[0] * x + c[1] * y + c[2]) / w - x
    dv = c[12] + (c[3] * x + c[4] * y + c[5]) / w - y
    return torch.stack([du, dv])


def face_maps(points: Tensor, perspective: bool) -> Tensor:
    """Per face: the map from an animated pixel to the neutral pixel showing the same surface point.

    For a triangle, pixel -> barycentrics on the animated triangle (perspective-correct) -> the same barycentrics
    on the neutral triangle -> its pixel is a homography: with the corners in homogeneous pixel coordinates
    ``a_k = (u_k z_k, v_k z_k, z_k)`` (z = depth; z = 1 for orthographic cameras, where the map is affine), the
    unnormalised barycentrics of pixel ``p`` are ``adj(A) p`` (A has columns a_k) and the neutral point is
    ``N adj(A) p``; the scale (det A, and the depth of the point) cancels in the division by the third
    coordinate. Coordinates are taken relative to each triangle's centroid (animated and neutral), so that the
    float32 products do not cancel on small faces: an unmoved mesh maps every pixel to itself to ~1e-5 px.
    Component-major ``[Fv]`` planes throughout: small trailing dimensions (3 corners x 3 coordinates) make torch's
    CPU gathers and reductions many times slower than elementwise ops on whole planes.

    Args:
        points: ``[3 corners, 2 meshes (animated, neutral), 3 (u, v, depth), Fv]`` (:func:`corner_points`).
        perspective: False for an orthographic camera.

    Returns:
        ``[13, Fv]`` (component-major, gathered per pixel): the homography H row-major (9; pixel relative to the
        animated centroid -> homogeneous pixel relative to the neutral centroid), the animated centroid (2), the
        neutral minus the animated centroid (2).
    """
    rows, centres = [], []
    for mesh in range(2):
        u, v, z = points[:, mesh, 0], points[:, mesh, 1], points[:, mesh, 2]  # [3 corners, Fv] each
        cu, cv = (u[0] + u[1] + u[2]) / 3.0, (v[0] + v[1] + v[2]) / 3.0
        if perspective:
            rows.append([((u[k] - cu) * z[k], (v[k] - cv) * z[k], z[k]) for k in range(3)])
        else:
            rows.append([(u[k] - cu, v[k] - cv, 1.0) for k in range(3)])
        centres.append((cu, cv))
    rows_a, rows_n = rows
    homog = [0.0] * 9
    for k in range(3):  # H = N adj(A) = sum_k n_k (a_k+1 x a_k+2)^T
        (p0, p1, p2), (q0, q1, q2) = rows_a[(k + 1) % 3], rows_a[(k + 2) % 3]
        adj = (p1 * q2 - p2 * q1, p2 * q0 - p0 * q2, p0 * q1 - p1 * q0)
        for i in range(3):
            for j in range(3):
                homog[3 * i + j] = homog[3 * i + j] + rows_n[k][i] * adj[j]
    (cu_a, cv_a), (cu_n, cv_n) = centres
    planes = [*homog, cu_a, cv_a, cu_n - cu_a, cv_n - cv_a]
    return torch.stack(planes)


def extend_displacement(displacement: Tensor, mask: Tensor, falloff: float, trust: float = 0.5) -> Tensor:
    """Extend a displacement field known on ``mask`` smoothly outside it, fading to exactly zero ``falloff`` away.

    The dense form of :func:`extend_pixels` (which says how).

    Args:
        displacement: ``[B,C,H,W]`` field (any C; C=2 for a flow), only read where ``mask`` is set.
        mask: ``[B,H,W]`` or ``[B,1,H,W]`` bool (or float > 0 where known): where ``displacement`` is known.
        falloff: distance in pixels over which the motion fades out; 0 leaves everything off the mask still.
        trust: coverage in (0, 1] from which a block's own mean is used without the coarser levels.

    Returns:
        ``[B,C,H,W]`` extended field, equal to ``displacement`` on the mask.
    """
    if displacement.ndim != 4:
        raise ValueError(
            f"extend_displacement: `displacement` must be [B,C,H,W], got {tuple(displacement.shape)}."
        )
    if mask.ndim == 4:
        mask = mask[:, 0]
    n_batch, n_chan, height, width = displacement.shape
    if mask.shape != (n_batch, height, width):
        raise ValueError(
            f"extend_displacement: `mask` must be [B,H,W] = {[n_batch, height, width]}, got {tuple(mask.shape)}."
        )
    index = torch.nonzero((mask if mask.dtype == torch.bool else mask > 0).reshape(-1))[:, 0]
    values = displacement.transpose(0, 1).reshape(n_chan, -1).index_select(1, index)  # [C,P]
    return extend_pixels(values, index, (n_batch, height, width), falloff, trust)


def extend_pixels(
    values: Tensor, index: Tensor, shape: tuple[int, int, int], falloff: float, trust: float = 0.5
) -> Tensor:
    """A field known at some pixels, made dense: kept there, extended smoothly around them, zero far away.

    ``out = values`` at the known pixels and ``fill * (1 - smoothstep(distance / falloff))`` elsewhere:

    * ``fill`` is a push-pull interpolation (Gortler et al., the Lumigraph's hole filling): pull averages the
      known values and their coverage over 2x2 blocks, level after level, until the blocks are twice ``falloff``;
      push, coarse to fine, keeps a block's own mean where it is covered at least ``trust`` and blends in the
      upsampled coarser level elsewhere (normalised, so there is no shrinking towards zero). Just outside the
      known pixels the fill is the mean of the nearest ones in a 2x2 block, so it meets them to about a pixel;
      further out it is the motion of the nearest part of the mask, smoothly blended.
    * ``distance`` is the Euclidean distance to the known pixels (scipy's exact transform on blocks of about
      ``falloff / 8``, so its cost does not grow with the image), and ``1 - smoothstep`` fades from 1 at the
      border to 0 at ``falloff`` with zero slope at both ends (C1: no crease at the face's outline or at the
      edge of the moving region). Nothing farther than ``falloff`` plus a block or so moves at all.

    The fade is the steepest part: it changes the displacement by up to ``1.5 |d| / falloff`` pixels per pixel,
    so a ``falloff`` below ``1.5 |d|`` folds the backward map over itself (background pixels read in reverse
    order); use ``falloff >= 3 |d|`` for a gentle stretch. It is linear in ``values`` (the mask decides the
    weights), so gradients flow through it. Only the final bilinear upsampling and the scatter of the known
    values run at full resolution (a full-resolution image is never pooled); everything else on 2x2 blocks
    and coarser.

    Args:
        values: ``[C,P]`` the field at P known pixels.
        index: ``[P]`` long, distinct positions of those pixels in the flattened ``[B,H,W]``.
        shape: ``(B, H, W)``.
        falloff: distance in pixels over which the motion fades out; 0 leaves everything else at 0.
        trust: coverage in (0, 1] from which a block's own mean is used without the coarser levels.

    Returns:
        ``[B,C,H,W]`` dense field.
    """
    if not 0.0 < trust <= 1.0:
        raise ValueError(f"extend_displacement: `trust` must be in (0, 1], got {trust}.")
    if not falloff >= 0.0:  # also rejects NaN
        raise ValueError(f"extend_displacement: `falloff` must be >= 0 pixels, got {falloff}.")
    n_batch, height, width = (int(s) for s in shape)
    n_chan = values.shape[0]
    plane = height * width
    # Integer bookkeeping in numpy: torch's int64 division is several times slower on the CPU.
    flat = index.detach().cpu().numpy()
    frame, pixel = np.divmod(flat, plane)
    row, col = np.divmod(pixel, width)
    scatter = (flat + frame * ((n_chan - 1) * plane))[None] + (np.arange(n_chan) * plane)[:, None]
    if falloff < 0.5:
        out = torch.zeros(n_batch * n_chan * plane, dtype=values.dtype, device=values.device)
    else:
        levels, dist_level = _levels(falloff)
        step = 1 << levels
        half_h, half_w = (height + (-height % step)) // 2, (width + (-width % step)) // 2  # whole blocks
        cell = torch.from_numpy((frame * half_h + (row >> 1)) * half_w + (col >> 1)).to(values.device)
        known = torch.cat([values, torch.ones_like(values[:1])])  # [C+1,P]: values and coverage
        level = torch.zeros(n_chan + 1, n_batch * half_h * half_w, dtype=values.dtype, device=values.device)
        # sums, then means (index_add's alpha argument takes a path ~20x slower on the CPU)
        level = level.index_add(1, cell, known).view(n_chan + 1, n_batch, half_h, half_w) * 0.25
        pyramid = [level.transpose(0, 1).contiguous()]  # level 1: [B,C+1,h,w] block means, coverage last
        for _ in range(levels - 1):
            pyramid.append(_half(pyramid[-1]))
        pushed: Tensor | None = None  # premultiplied (fill * W, W), levels K..1
        for level in reversed(pyramid):
            coverage = level[:, -1:]
            own = level / coverage.clamp_min(trust)  # a * (block mean, 1), a = min(1, coverage / trust)
            if pushed is None:
                pushed = own
            else:
                pushed = torch.addcmul(own, 1.0 - (coverage / trust).clamp_max(1.0), _double(pushed))
        assert pushed is not None
        fill = pushed[:, :-1] / pushed[:, -1:].clamp_min(1e-12)  # W > 0 within 2^K / 2 >= falloff; 0 beyond
        fade = _fade(pyramid[dist_level - 1][:, -1] > 0, falloff / (1 << dist_level)).to(fill)
        for _ in range(dist_level - 1):
            fade = _double(fade)
        out = _double(fill * fade)[..., :height, :width].reshape(-1)  # a view unless there was padding
    # in place: `out` is a fresh tensor that no backward formula reads
    scatter_t = torch.from_numpy(scatter.reshape(-1)).to(values.device)
    return out.index_put_((scatter_t,), values.reshape(-1)).view(n_batch, n_chan, height, width)


def extend_to_grid(
    displacement: np.ndarray, mask: np.ndarray, falloff: float, trust: float = 0.5, dtype: type = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`extend_pixels` then :func:`displacement_to_grid` in numpy and numba, without gradients.

    The same computation (equal to float32 rounding), several times faster on the CPU, where torch's
    per-operation overhead dominates at these sizes.

    Args:
        displacement: ``[B,C,H,W]`` float64 field, read where ``mask`` is set.
        mask: ``[B,H,W]`` bool.
        falloff: distance in pixels over which the motion fades out (see :func:`extend_pixels`).
        trust: coverage in (0, 1] from which a block's own mean is used without the coarser levels.
        dtype: numpy dtype of the results (the arithmetic is float64).

    Returns:
        ``[B,C,H,W]`` extended field and its ``[B,H,W,2]`` ``grid_sample`` grid (C = 2).
    """
    from render import _warp_kernel as kernel  # numba: imported only by this path

    if not (0.0 < trust <= 1.0 and falloff >= 0.0):
        raise ValueError(f"extend_to_grid: needs 0 < trust <= 1 and falloff >= 0, got {trust}, {falloff}.")
    displacement = np.ascontiguousarray(displacement, np.float64)  # one compiled signature per kernel
    mask = np.ascontiguousarray(mask, bool)
    n_batch, n_chan, height, width = displacement.shape
    outside = np.zeros((n_batch, n_chan, 0, 0))
    if falloff >= 0.5:
        levels, dist_level = _levels(falloff)
        step = 1 << levels
        half_h, half_w = (height + (-height % step)) // 2, (width + (-width % step)) // 2
        pyramid = [kernel.block_means(displacement, mask, half_h, half_w)]
        for _ in range(levels - 1):
            pyramid.append(kernel.halve(pyramid[-1]))
        pushed = np.zeros((n_batch, n_chan + 1, 0, 0))
        for level in reversed(pyramid):
            pushed = kernel.push_level(level, pushed, trust)
        fade = _fade_blocks(pyramid[dist_level - 1][:, -1] > 0, falloff / (1 << dist_level)).astype(
            np.float64
        )
        for _ in range(dist_level - 1):
            fade = kernel.double(fade)
        outside = pushed[:, :-1] / np.maximum(pushed[:, -1:], 1e-12) * fade
    out = np.empty(displacement.shape, dtype)
    grid = np.empty((n_batch, height, width, 2), dtype)
    kernel.compose(displacement, mask, np.ascontiguousarray(outside), out, grid)
    return out, grid


def _levels(falloff: float) -> tuple[int, int]:
    """Pyramid levels K (top blocks >= 2 falloff, so the fill reaches that far) and the level the distance is
    measured on (blocks of about falloff / 8)."""
    levels = max(1, math.ceil(math.log2(2.0 * falloff)))
    return levels, min(levels, max(1, round(math.log2(falloff / 8.0))))


def _fade(covered: Tensor, falloff_blocks: float) -> Tensor:
    """:func:`_fade_blocks` of a tensor, as a tensor on its device."""
    return torch.from_numpy(_fade_blocks(covered.detach().cpu().numpy(), falloff_blocks)).to(covered.device)


def _fade_blocks(covered: np.ndarray, falloff_blocks: float) -> np.ndarray:
    """``1 - smoothstep(distance / falloff)`` ``[B,1,h,w]`` float32 on a block grid: distance to the nearest
    covered block of ``covered`` ``[B,h,w]``.

    A block next to a covered one is 1 block away centre to centre, but its pixels lie 0 to 2 blocks from the
    mask; half a block is taken off so that the blocks that meet the mask, and their neighbours, are near 1.
    """
    fade = np.zeros((covered.shape[0], 1, *covered.shape[1:]), np.float32)
    for b, free in enumerate(~covered):
        if not free.all():  # an image without the mesh does not move at all
            t = np.clip((ndimage.distance_transform_edt(free) - 0.5) / falloff_blocks, 0.0, 1.0)
            fade[b, 0] = 1.0 - t * t * (3.0 - 2.0 * t)
    return fade


def _half(x: Tensor) -> Tensor:
    """2x2 block means of ``[B,C,2h,2w]`` (four strided adds: several times faster than avg_pool2d on the CPU)."""
    return (x[..., ::2, ::2] + x[..., 1::2, ::2] + x[..., ::2, 1::2] + x[..., 1::2, 1::2]) * 0.25


def _double(x: Tensor) -> Tensor:
    """Bilinear 2x upsampling, pixel centres aligned (``align_corners=False``), edges clamped."""
    return F_.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
