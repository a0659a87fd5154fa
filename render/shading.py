"""Vertex normals, attribute interpolation and local illumination, in vectorised torch.

Everything here is plain differentiable torch: a later differentiable rasterization pass can reuse it on the
``face_ids`` / ``bary`` buffers produced by :func:`render.rasterizer.rasterize`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F_
from torch import Tensor

from render.raster_core import DEFAULT_ALBEDO  # a neutral skin-like albedo used without per-vertex colours

__all__ = [
    "DEFAULT_ALBEDO",
    "face_normals",
    "vertex_normals",
    "interpolate",
    "lambert",
    "blinn_phong",
]


def face_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Unnormalised face normals ``[B,F,3]`` (length = twice the face area).

    The direction follows the right-hand rule on ``faces`` order: counter-clockwise faces point outwards.

    Args:
        vertices: ``[B,V,3]`` positions.
        faces: ``[F,3]`` long vertex indices.
    """
    v0 = vertices[:, faces[:, 0]]
    v1 = vertices[:, faces[:, 1]]
    v2 = vertices[:, faces[:, 2]]
    return torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Smooth unit vertex normals ``[B,V,3]``: area-weighted sum of the adjacent face normals.

    Vertices used by no face get a zero normal.

    Args:
        vertices: ``[B,V,3]`` positions.
        faces: ``[F,3]`` long vertex indices.
    """
    n_batch, n_verts, _ = vertices.shape
    flat = vertices.reshape(n_batch * n_verts, 3)
    # Flattened [B*V] indexing with one small index_select / index_add per corner keeps every op under
    # torch's parallel grain size for FLAME-size meshes: waking and spinning torch's OpenMP pool for
    # ~30k-element ops costs far more than the work itself on a few cores (and competes with numba's threads).
    idx = (faces[None] + (torch.arange(n_batch, device=faces.device) * n_verts).view(-1, 1, 1)).reshape(-1, 3)
    v0, v1, v2 = (flat.index_select(0, idx[:, k]) for k in range(3))
    fn = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)  # length = 2 * area: area weighting for free
    normals = torch.zeros_like(flat)
    for k in range(3):
        normals = normals.index_add(0, idx[:, k], fn)
    return F_.normalize(normals, dim=-1, eps=1e-12).view(n_batch, n_verts, 3)


def interpolate(attributes: Tensor, faces: Tensor, face_ids: Tensor, bary: Tensor) -> Tensor:
    """Barycentric interpolation of per-vertex attributes into an image.

    Args:
        attributes: ``[B,V,C]`` (or ``[V,C]``, shared by the batch) per-vertex values.
        faces: ``[F,3]`` long vertex indices.
        face_ids: ``[B,H,W]`` long face index per pixel, -1 where empty.
        bary: ``[B,H,W,3]`` barycentric weights w.r.t. the face's vertex order.

    Returns:
        ``[B,H,W,C]`` interpolated values, zero where ``face_ids`` is -1.
    """
    n_batch = face_ids.shape[0]
    if attributes.ndim == 2:
        attributes = attributes[None].expand(n_batch, -1, -1)
    n_verts, channels = attributes.shape[1], attributes.shape[2]
    mask = face_ids >= 0
    vidx = faces[face_ids.clamp(min=0)]  # [B,H,W,3]
    offset = torch.arange(n_batch, device=face_ids.device).view(-1, 1, 1, 1) * n_verts
    flat = attributes.reshape(n_batch * n_verts, channels)
    gathered = flat[(vidx + offset).reshape(-1)].view(*vidx.shape, channels)  # [B,H,W,3,C]
    out = (gathered * bary.to(attributes.dtype)[..., None]).sum(dim=-2)
    return out * mask[..., None].to(out.dtype)


def _unit(direction: Sequence[float] | Tensor, like: Tensor) -> Tensor:
    d = torch.as_tensor(direction, dtype=like.dtype, device=like.device)
    return d / d.norm().clamp_min(1e-12)


def lambert(
    normals: Tensor,
    albedo: Tensor,
    light_direction: Sequence[float] | Tensor,
    ambient: float,
) -> Tensor:
    """Lambertian shading ``albedo * (ambient + (1 - ambient) * max(n.l, 0))``.

    Args:
        normals: ``[...,3]`` unit normals (camera space).
        albedo: ``[...,3]`` (or broadcastable) base colour in [0,1].
        light_direction: direction *towards* the light, camera space (x right, y up, z towards the viewer).
        ambient: ambient fraction in [0,1].

    Returns:
        ``[...,3]`` RGB, not clamped.
    """
    light = _unit(light_direction, normals)
    diffuse = (normals @ light).clamp_min(0.0)[..., None]
    return albedo * (ambient + (1.0 - ambient) * diffuse)


def blinn_phong(
    normals: Tensor,
    view_dirs: Tensor,
    albedo: Tensor,
    light_direction: Sequence[float] | Tensor,
    ambient: float,
    specular: float,
    shininess: float,
) -> Tensor:
    """Blinn-Phong shading: Lambert plus a white highlight ``specular * max(n.h, 0)^shininess``.

    Args:
        normals: ``[...,3]`` unit normals (camera space).
        view_dirs: ``[...,3]`` unit vectors from the surface towards the camera.
        albedo: ``[...,3]`` (or broadcastable) base colour in [0,1].
        light_direction: direction towards the light, camera space.
        ambient: ambient fraction in [0,1].
        specular: highlight strength.
        shininess: Blinn exponent.

    Returns:
        ``[...,3]`` RGB, not clamped.
    """
    light = _unit(light_direction, normals)
    n_dot_l = normals @ light
    half = F_.normalize(view_dirs + light, dim=-1, eps=1e-12)
    n_dot_h = (normals * half).sum(dim=-1).clamp_min(0.0)
    # No highlight on surfaces turned away from the light.
    spec = specular * torch.where(n_dot_l > 0, n_dot_h.pow(shininess), torch.zeros_like(n_dot_h))
    diffuse = n_dot_l.clamp_min(0.0)[..., None]
    return albedo * (ambient + (1.0 - ambient) * diffuse) + spec[..., None]


def check_shading_options(
    owner: str, shading: str, light_direction: Sequence[float], background: Sequence[float]
) -> None:
    """Validates the shading options every renderer backend takes; errors name ``owner`` and the argument."""
    if shading not in ("phong", "lambert", "normals"):
        raise ValueError(f"{owner}: `shading` must be 'phong', 'lambert' or 'normals', got {shading!r}.")
    if len(light_direction) != 3 or not any(abs(float(x)) > 0 for x in light_direction):
        raise ValueError(f"{owner}: `light_direction` must be a non-zero 3-vector.")
    if len(background) != 3:
        raise ValueError(f"{owner}: `background` must be an RGB triple.")
