"""Geometry-driven portrait warping: a dense backward flow from mesh motion, extended outside the face, then sampled.

    from render.warp import mesh_flow, region_faces, warp, warp_portrait
    fit = fit_image("portrait.jpg", face_model)                 # talk.track.fit: neutral vertices + camera
    out = warp_portrait(image, fit.vertices, animated, faces, fit.camera)   # image [1,3,H,W] -> out.image [T,3,H,W]

Flow. The ANIMATED mesh is rasterized (:func:`render.rasterizer.rasterize`: which face each pixel centre sees,
numba, no gradient). The surface point a covered pixel shows has the same barycentrics on the NEUTRAL mesh, and
its projection is where that point lies in the portrait. Per face, pixel -> perspective-correct barycentrics ->
neutral point -> its pixel is one homography, built from the projected vertices (:func:`render.flow.face_maps`);
each covered pixel evaluates its face's. This equals interpolating the neutral camera-space positions with the
barycentrics and projecting, as :mod:`render.differentiable` would, in closed form (projecting interpolated 3-D
points, not interpolating projected 2-D ones, which perspective bends): an unmoved mesh gives the identity to
~1e-5 px, a mesh whose projection shifts by k pixels gives exactly k. When gradients are wanted this runs in
torch (:mod:`render.flow`); otherwise numba kernels (:mod:`render._warp_kernel`) compute the same flow and grid
in float64 without torch's per-operation overhead, several times faster on a small CPU.

Outside the mesh, :func:`render.flow.extend_pixels` (or :func:`render.flow.extend_to_grid`) extends the
displacement: a push-pull fill (the motion of the nearest part of the face, smoothly blended) times
``1 - smoothstep(distance to the face / falloff)``. Near the face it moves at full strength (the skin under the
chin, the neck and the hair follow the jaw and the head), it rolls off with no crease at the outline, and beyond
``falloff`` it is exactly zero: the background does not move. Pixels whose source point is hidden in the
portrait (the mouth interior, disocclusions) still read some pixel (e.g. the lips); ``mouth_mask`` marks the
mouth interior for a generator to fill.

Gradients: ``grid`` and ``displacement`` (hence the warped image) are differentiable w.r.t. the portrait, the
neutral and animated vertices (per face, for fixed visibility) and the camera tensors; visibility, the masks and
``depth`` are not.

Conventions: images are torch-style ``[B,C,H,W]`` (any C); pixel ``(i, j)`` has its centre at
``(j + 0.5, i + 0.5)`` (:mod:`render.camera`), which is ``grid_sample``'s ``align_corners=False`` (see
:mod:`render.flow`). Normalised coordinates address the whole image whatever its resolution, so a flow computed at
256x256 warps a 512x512 portrait directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F_
from torch import Tensor

from render._warp_kernel import pixel_flow
from render.camera import Camera
from render.flow import (
    corner_points,
    displacement_to_grid,
    extend_pixels,
    extend_to_grid,
    pixel_displacement,
    visible_faces,
)
from render.rasterizer import rasterize

__all__ = ["MeshFlow", "WarpedPortrait", "mesh_flow", "region_faces", "warp", "warp_portrait"]


@dataclass(frozen=True, eq=False)
class MeshFlow:
    """A backward flow from an animated mesh to its portrait (neutral mesh), with conditioning masks.

    Attributes:
        grid: ``[B,H,W,2]`` sampling positions in the portrait for ``grid_sample`` (``align_corners=False``):
            output pixel ``(i, j)`` reads the portrait at normalised ``grid[b, i, j]`` (x, y in [-1, 1]).
        displacement: ``[B,2,H,W]`` the same in pixels of the flow's image size: output pixel ``(i, j)`` reads
            the portrait at ``(j + 0.5 + du, i + 0.5 + dv)``, ``(du, dv) = displacement[b, :, i, j]``.
        mask: ``[B,H,W]`` bool, pixels covered by the animated mesh.
        depth: ``[B,H,W]`` camera-space depth of the animated surface (metres), ``+inf`` off the mask; no
            gradient (from the rasterizer).
        mouth_mask: ``[B,H,W]`` bool, pixels showing one of the ``mouth_faces`` given to :func:`mesh_flow`
            (None if none were given).
    """

    grid: Tensor
    displacement: Tensor
    mask: Tensor
    depth: Tensor
    mouth_mask: Tensor | None = None

    def __post_init__(self) -> None:
        n_batch, height, width = self.mask.shape
        if self.grid.shape != (n_batch, height, width, 2) or self.displacement.shape != (
            n_batch,
            2,
            height,
            width,
        ):
            raise ValueError(
                f"MeshFlow: `grid` must be [B,H,W,2] and `displacement` [B,2,H,W] with (B,H,W) = "
                f"{(n_batch, height, width)}, got {tuple(self.grid.shape)} and {tuple(self.displacement.shape)}."
            )

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the flow."""
        return int(self.mask.shape[1]), int(self.mask.shape[2])


@dataclass(frozen=True, eq=False)
class WarpedPortrait:
    """Result of :func:`warp_portrait`.

    Attributes:
        image: ``[B,C,H,W]`` the warped portrait.
        flow: the :class:`MeshFlow` that produced it (masks for conditioning a generator).
    """

    image: Tensor
    flow: MeshFlow


def region_faces(faces: Tensor, vertex_ids: Tensor) -> Tensor:
    """Faces whose three vertices all lie in a vertex region (e.g. a ``FLAME_masks`` / procedural-head region).

    Args:
        faces: ``[F,3]`` vertex indices.
        vertex_ids: ``[N]`` vertex ids of the region (e.g. ``masks["mouth_interior"]``).

    Returns:
        ``[M]`` long indices into ``faces``, for ``mesh_flow(..., mouth_faces=...)``.
    """
    faces = torch.as_tensor(faces).long()
    vertex_ids = torch.as_tensor(vertex_ids).long().reshape(-1)
    size = (
        max(int(faces.max()) if faces.numel() else 0, int(vertex_ids.max()) if vertex_ids.numel() else 0) + 1
    )
    inside = torch.zeros(size, dtype=torch.bool, device=faces.device)
    inside[vertex_ids.to(faces.device)] = True
    return torch.nonzero(inside[faces].all(dim=1))[:, 0]


def _batch(name: str, vertices: Tensor, n_verts: int | None = None) -> Tensor:
    if vertices.ndim == 2:
        vertices = vertices[None]
    if vertices.ndim != 3 or vertices.shape[-1] != 3 or not vertices.is_floating_point():
        raise ValueError(
            f"mesh_flow: `{name}` must be a float [B,V,3] or [V,3] tensor, got {tuple(vertices.shape)}."
        )
    if n_verts is not None and vertices.shape[1] != n_verts:
        raise ValueError(
            f"mesh_flow: `{name}` has {vertices.shape[1]} vertices but `animated` has {n_verts}; both must be the "
            "same mesh."
        )
    return vertices


def mesh_flow(
    neutral: Tensor,
    animated: Tensor,
    faces: Tensor,
    camera: Camera,
    image_size: tuple[int, int] | None = None,
    falloff: float = 0.125,
    mouth_faces: Tensor | None = None,
    cull_backfaces: bool = False,
) -> MeshFlow:
    """Backward flow that moves a portrait of the ``neutral`` mesh to the pose of the ``animated`` one.

    Args:
        neutral: ``[V,3]`` or ``[B|1,V,3]`` the mesh fitted to the portrait (world space, metres; e.g.
            ``FitResult.vertices``).
        animated: ``[V,3]`` or ``[B,V,3]`` the animated meshes (a sequence: ``[T,V,3]`` against one neutral).
        faces: ``[F,3]`` vertex indices.
        camera: the portrait's camera (``FitResult.camera``), a batch of 1 or B.
        image_size: ``(H, W)`` of the flow; None = ``camera.image_size``. Another size rescales the camera's
            pixel coordinates (edges to edges), e.g. a 256x256 flow for a 512x512 fit.
        falloff: distance over which the motion fades out around the mesh, as a fraction of the flow image's
            longer side (0.125: 32 px at 256x256); nothing farther moves. The fade stretches the image by up to
            ``1.5 |d| / falloff`` per pixel, so keep it above ~3x the largest displacement ``|d|`` (in the same
            units) or the background folds over itself near the face; 0 keeps everything off the mesh still.
        mouth_faces: ``[M]`` indices into ``faces`` of the mouth interior (:func:`region_faces`); fills
            ``MeshFlow.mouth_mask``.
        cull_backfaces: skip faces turned away from the camera (closed meshes only).

    Returns:
        A :class:`MeshFlow` of batch ``B = max`` of the inputs' batches, on the vertices' device and dtype.
    """
    animated = _batch("animated", animated)
    neutral = _batch("neutral", neutral, animated.shape[1])
    n_batch = max(animated.shape[0], neutral.shape[0], camera.batch_size)
    for name, size in (
        ("animated", animated.shape[0]),
        ("neutral", neutral.shape[0]),
        ("camera", camera.batch_size),
    ):
        if size not in (1, n_batch):
            raise ValueError(
                f"mesh_flow: the {name} batch is {size}; batches must be 1 or the same B={n_batch}."
            )
    if not falloff >= 0.0:
        raise ValueError(f"mesh_flow: `falloff` must be >= 0 (a fraction of the image side), got {falloff}.")
    height, width = (int(s) for s in (image_size or camera.image_size))
    if height <= 0 or width <= 0:
        raise ValueError(f"mesh_flow: `image_size` must be positive (H, W), got {image_size}.")
    dtype = torch.promote_types(animated.dtype, neutral.dtype)
    device, perspective = animated.device, not camera.orthographic
    uvz_a, uvz_n = _project(camera, animated.to(dtype), neutral.to(dtype), (height, width))
    uvz_a, uvz_n = uvz_a.expand(n_batch, -1, -1), uvz_n.expand(n_batch, -1, -1)
    frags = rasterize(uvz_a.detach(), faces, (height, width), perspective, cull_backfaces)
    faces_np = torch.as_tensor(faces).detach().to("cpu", torch.int64).numpy()
    face_ids = frags.face_ids.numpy()  # CPU arrays: the integer bookkeeping is numpy's (several times faster)
    falloff_px = falloff * max(height, width)
    if torch.is_grad_enabled() and (uvz_a.requires_grad or uvz_n.requires_grad):
        flat, rows, pairs = visible_faces(face_ids, faces_np.shape[0])
        points = corner_points(uvz_a, uvz_n, faces_np[pairs % faces_np.shape[0]], pairs // faces_np.shape[0])
        values = pixel_displacement(points, perspective, flat, rows, face_ids.shape)
        displacement = extend_pixels(values, torch.from_numpy(flat).to(device), face_ids.shape, falloff_px)
        grid = displacement_to_grid(displacement)
    else:  # the same in numba, without torch's per-operation overhead (several times faster)
        disp = np.zeros((n_batch, 2, height, width))
        uvz = [np.ascontiguousarray(t.detach().cpu().numpy(), np.float64) for t in (uvz_a, uvz_n)]
        pixel_flow(face_ids, *uvz, faces_np, perspective, disp)
        np_dtype = torch.empty((), dtype=dtype).numpy().dtype
        disp, grid_np = extend_to_grid(disp, face_ids >= 0, falloff_px, dtype=np_dtype)
        displacement, grid = torch.from_numpy(disp).to(device), torch.from_numpy(grid_np).to(device)
    mask = frags.mask.to(device)

    mouth = None
    if mouth_faces is not None:
        lookup = np.zeros(faces_np.shape[0] + 1, dtype=bool)
        lookup[np.asarray(torch.as_tensor(mouth_faces).cpu(), np.int64) + 1] = True
        mouth = torch.from_numpy(lookup[face_ids + 1]).to(device)  # an empty pixel (-1) reads lookup[0]
    return MeshFlow(
        grid=grid,
        displacement=displacement,
        mask=mask,
        depth=frags.depth.to(device, dtype),
        mouth_mask=mouth,
    )


def _project(
    camera: Camera, animated: Tensor, neutral: Tensor, size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """(u, v, depth) ``[B|1,V,3]`` of both meshes, in pixels of an image of ``size`` (edges map to edges)."""
    if camera.batch_size == 1:  # one call for both: the projection's cost is mostly per-op overhead
        both = camera.project(torch.cat([animated, neutral]))
        uvz_a, uvz_n = both[: animated.shape[0]], both[animated.shape[0] :]
    else:
        uvz_a, uvz_n = camera.project(animated), camera.project(neutral)
    if tuple(size) != tuple(camera.image_size):
        scale = [size[1] / camera.image_size[1], size[0] / camera.image_size[0], 1.0]
        scale_t = torch.tensor(scale, dtype=uvz_a.dtype, device=uvz_a.device)
        uvz_a, uvz_n = uvz_a * scale_t, uvz_n * scale_t
    return uvz_a, uvz_n


def warp(
    image: Tensor,
    flow: MeshFlow | Tensor,
    mode: Literal["bilinear", "nearest", "bicubic"] = "bilinear",
    padding_mode: Literal["border", "zeros", "reflection"] = "border",
) -> Tensor:
    """Sample a portrait along a backward flow (``grid_sample``, ``align_corners=False``).

    Args:
        image: ``[B|1,C,H',W']`` portrait(s); any resolution (the grid is normalised), a batch of 1 is shared.
        flow: a :class:`MeshFlow` or its ``grid`` ``[B,H,W,2]``.
        mode: ``grid_sample`` interpolation.
        padding_mode: what samples outside the portrait read; ``"border"`` repeats the edge pixels.

    Returns:
        ``[B,C,H,W]`` the warped image, differentiable w.r.t. ``image`` and the grid.
    """
    grid = flow.grid if isinstance(flow, MeshFlow) else flow
    if image.ndim != 4 or grid.ndim != 4 or grid.shape[-1] != 2:
        raise ValueError(
            f"warp: `image` must be [B,C,H,W] and the grid [B,H,W,2], got {tuple(image.shape)} and "
            f"{tuple(grid.shape)}."
        )
    n_batch = max(image.shape[0], grid.shape[0])
    if image.shape[0] not in (1, n_batch) or grid.shape[0] not in (1, n_batch):
        raise ValueError(
            f"warp: image batch {image.shape[0]} and flow batch {grid.shape[0]} must match or be 1."
        )
    image = image.expand(n_batch, -1, -1, -1)
    grid = grid.to(image.dtype).expand(n_batch, -1, -1, -1)
    return F_.grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def warp_portrait(
    image: Tensor,
    neutral: Tensor,
    animated: Tensor,
    faces: Tensor,
    camera: Camera,
    image_size: tuple[int, int] | None = None,
    falloff: float = 0.125,
    mouth_faces: Tensor | None = None,
) -> WarpedPortrait:
    """Warp a portrait of the ``neutral`` mesh to the ``animated`` meshes: :func:`mesh_flow` then :func:`warp`.

    Args:
        image: ``[B|1,C,H,W]`` portrait(s) (e.g. float RGB in [0,1]).
        neutral: ``[V,3]`` or ``[B|1,V,3]`` mesh fitted to the portrait.
        animated: ``[V,3]`` or ``[B,V,3]`` animated meshes (``[T,V,3]`` for a sequence).
        faces: ``[F,3]`` vertex indices.
        camera: the portrait's camera (``FitResult.camera``); its ``image_size`` may differ from the image's.
        image_size: ``(H, W)`` of the output; None = the portrait's.
        falloff: reach of the motion outside the mesh (see :func:`mesh_flow`).
        mouth_faces: ``[M]`` mouth-interior face indices (see :func:`region_faces`).

    Returns:
        :class:`WarpedPortrait` with the ``[B,C,H,W]`` image and its flow.
    """
    if image.ndim != 4:
        raise ValueError(f"warp_portrait: `image` must be [B,C,H,W], got {tuple(image.shape)}.")
    size = image_size or (int(image.shape[-2]), int(image.shape[-1]))
    flow = mesh_flow(neutral, animated, faces, camera, size, falloff, mouth_faces)
    return WarpedPortrait(image=warp(image, flow), flow=flow)
