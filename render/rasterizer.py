"""Mesh renderer interface and the CPU z-buffer rasterizer (torch transforms, numba scan conversion and shading).

Pipeline of :class:`TorchRasterizer`: vertices are moved to camera space and projected in torch (vectorised);
:func:`rasterize` scan-converts the triangles with the numba kernels in :mod:`render._raster_kernel` and returns
per-pixel face ids, perspective-correct barycentrics and depth; smooth vertex normals (torch) and optional vertex
colours are interpolated at the covered pixels and shaded by a fused numba kernel (:mod:`render._shade_kernel`)
that implements the torch reference formulas of :mod:`render.shading`. The numpy side of both steps is
:mod:`render.raster_core` (torch-free, so that :mod:`render.worker` can draw frames in a process without torch). This path has no autograd;
:mod:`render.differentiable` keeps its visibility pass and redoes the rest in torch for gradients.

Sampling: pixel ``(i, j)`` is covered by a triangle when its centre ``(j + 0.5, i + 0.5)`` lies inside it; centres
exactly on an edge follow the top-left rule, so meshes render without cracks or double coverage (see
:mod:`render._raster_kernel`). Faces with a vertex at depth <= ``ZNEAR`` are dropped whole (no near clipping).
There is no anti-aliasing: the mask is binary.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from render.camera import Camera
from render.raster_core import (
    ZNEAR,
    Projected,
    RasterArrays,
    Shading,
    composite,
    draw,
    draw_uint8,
    rasterize_arrays,
)  # fmt: skip
from render.shading import check_shading_options, vertex_normals

__all__ = ["Fragments", "RenderOutput", "MeshRenderer", "TorchRasterizer", "rasterize", "to_uint8", "ZNEAR"]


@dataclass(frozen=True, eq=False)
class Fragments:
    """Per-pixel rasterization result (non-differentiable; a differentiable pass interpolates from it).

    Attributes:
        face_ids: ``[B,H,W]`` int64 index of the visible face, -1 where empty.
        bary: ``[B,H,W,3]`` float32 perspective-correct barycentric weights of the visible face's vertices (in
            ``faces`` order); zero where empty.
        depth: ``[B,H,W]`` float32 camera-space depth (positive in front), ``+inf`` where empty.
        front_facing: ``[B,F]`` bool, True where the face is counter-clockwise as seen by the camera (its
            right-hand normal points towards the camera); meaningless for faces that were not drawn.
        mask: ``[B,H,W]`` bool coverage (``face_ids >= 0``).
    """

    face_ids: Tensor
    bary: Tensor
    depth: Tensor
    front_facing: Tensor
    mask: Tensor


@dataclass(frozen=True, eq=False)
class RenderOutput:
    """Rendered images.

    Attributes:
        image: ``[B,H,W,4]`` float32 RGBA in [0,1]; alpha is 1 on the mesh, 0 on the background (whose RGB is the
            renderer's background colour).
        depth: ``[B,H,W]`` float32 camera-space depth, ``+inf`` where empty.
        mask: ``[B,H,W]`` bool coverage.
        face_ids: ``[B,H,W]`` int64 visible face per pixel, -1 where empty (None if the backend has none).
        bary: ``[B,H,W,3]`` float32 barycentrics of the visible face (None if the backend has none).
        normals: ``[B,H,W,3]`` camera-space unit normals of the visible surface, turned towards the camera on
            faces seen from behind, 0 where empty (None unless the renderer was asked for them).
    """

    image: Tensor
    depth: Tensor
    mask: Tensor
    face_ids: Tensor | None = None
    bary: Tensor | None = None
    normals: Tensor | None = None


class MeshRenderer(ABC):
    """Interface of every mesh renderer backend (one camera convention: :mod:`render.camera`)."""

    @abstractmethod
    def render(
        self, vertices: Tensor, faces: Tensor, camera: Camera, colors: Tensor | None = None
    ) -> RenderOutput:
        """Render a batch of meshes sharing one topology.

        Args:
            vertices: ``[B,V,3]`` world-space positions in metres.
            faces: ``[F,3]`` long vertex indices, counter-clockwise seen from outside.
            camera: a camera batch of 1 or B.
            colors: optional ``[B,V,3]`` or ``[V,3]`` per-vertex albedo in [0,1].
        """

    def render_uint8(
        self, vertices: Tensor, faces: Tensor, camera: Camera, colors: Tensor | None = None
    ) -> np.ndarray:
        """Video frames ``[B,H,W,3]`` uint8: :meth:`render` over the renderer's ``background`` colour (white if it
        has none), as :func:`to_uint8` composites it. Backends may do it in one pass."""
        return to_uint8(self.render(vertices, faces, camera, colors), getattr(self, "background", (1.0, 1.0, 1.0)))


def rasterize(
    uvz: Tensor,
    faces: Tensor,
    image_size: tuple[int, int],
    perspective: bool = True,
    cull_backfaces: bool = False,
    znear: float = ZNEAR,
) -> Fragments:
    """Z-buffer rasterization of projected triangles on the CPU.

    Args:
        uvz: ``[B,V,3]`` pixel coordinates and depth per vertex (output of :meth:`Camera.project`).
        faces: ``[F,3]`` long vertex indices.
        image_size: ``(H, W)``.
        perspective: interpolate depth and barycentrics perspective-correctly (False for orthographic).
        cull_backfaces: drop faces that are clockwise as seen by the camera.
        znear: faces with a vertex at depth <= ``znear`` are dropped.

    Returns:
        :class:`Fragments` (CPU tensors).
    """
    height, width = int(image_size[0]), int(image_size[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"rasterize: `image_size` must be positive (H, W), got {image_size}.")
    uvz, faces = _check_mesh(uvz, faces)  # out-of-range faces would read out of bounds in the kernels
    uvz_np = uvz.detach().to("cpu", torch.float64).numpy()
    arrays = rasterize_arrays(uvz_np, faces.numpy(), height, width, perspective, cull_backfaces, znear)
    return _fragments(arrays)


def _fragments(arrays: RasterArrays) -> Fragments:
    return Fragments(
        face_ids=torch.from_numpy(arrays.face_ids),
        bary=torch.from_numpy(arrays.bary),
        depth=torch.from_numpy(arrays.depth),
        front_facing=torch.from_numpy(arrays.flags == 1),
        # numpy, not torch: a torch op this size would wake (and leave spinning) torch's OpenMP pool
        mask=torch.from_numpy(arrays.face_ids >= 0),
    )


class TorchRasterizer(MeshRenderer):
    """CPU z-buffer renderer without GL or pytorch3d: torch transforms and normals, numba rasterization and shading.

    Shading uses smooth vertex normals in camera space and one directional light fixed to the camera (a
    "headlight"), lit from both sides: faces seen from behind (e.g. inside the mouth) use flipped normals.
    Outputs are CPU tensors. The kernels use numba's thread pool (``numba.set_num_threads``); results do not
    depend on the thread count.

    Args:
        shading: ``"phong"`` (Blinn-Phong), ``"lambert"`` (diffuse only) or ``"normals"`` (camera-space normals
            mapped to RGB as ``n * 0.5 + 0.5``, e.g. as generator conditioning).
        light_direction: direction towards the light in camera space (x right, y up, z towards the viewer).
        ambient: ambient fraction of the albedo, in [0,1].
        specular: strength of the white Blinn-Phong highlight (``"phong"`` only).
        shininess: Blinn-Phong exponent (``"phong"`` only).
        background: RGB of empty pixels in [0,1].
        cull_backfaces: skip faces that are clockwise as seen by the camera (saves time on closed meshes;
            leave off for meshes with holes such as an open mouth).
        output_normals: also return per-pixel camera-space normals in ``RenderOutput.normals`` (numpy; adds
            about 10 ms per 256x256 frame and 30 ms per 512x512 frame on 2 cores, hence off by default).
    """

    def __init__(
        self,
        shading: Literal["phong", "lambert", "normals"] = "phong",
        light_direction: Sequence[float] = (0.3, 0.4, 1.0),
        ambient: float = 0.35,
        specular: float = 0.15,
        shininess: float = 20.0,
        background: Sequence[float] = (1.0, 1.0, 1.0),
        cull_backfaces: bool = False,
        output_normals: bool = False,
    ) -> None:
        check_shading_options("TorchRasterizer", shading, light_direction, background)
        self.shading = shading
        self.light_direction = tuple(float(x) for x in light_direction)
        self.ambient = float(ambient)
        self.specular = float(specular)
        self.shininess = float(shininess)
        self.background = tuple(float(x) for x in background)
        self.cull_backfaces = bool(cull_backfaces)
        self.output_normals = bool(output_normals)

    @property
    def settings(self) -> Shading:
        """The lighting, as :mod:`render.raster_core` (and a :class:`render.worker.RenderWorker`) takes it."""
        return Shading(
            self.shading, self.light_direction, self.ambient, self.specular, self.shininess, self.background
        )

    def project(self, vertices: Tensor, faces: Tensor, camera: Camera) -> Projected:
        """The torch half of :meth:`render`: ``[B,V,3]`` world vertices moved to camera space and projected, and
        their normals; the numpy half (:func:`render.raster_core.draw`, or :func:`~render.raster_core.draw_uint8` for
        video frames) rasterizes and shades them."""
        return self._project(*_check_mesh(vertices, faces), camera)

    def _project(self, vertices: Tensor, faces: Tensor, camera: Camera) -> Projected:
        """:meth:`project` of vertices and faces already checked by ``_check_mesh``."""
        n_batch = max(vertices.shape[0], camera.batch_size)
        if camera.batch_size not in (1, n_batch) or vertices.shape[0] not in (1, n_batch):
            raise ValueError(
                f"TorchRasterizer: vertex batch {vertices.shape[0]} and camera batch {camera.batch_size} "
                "must match or be 1."
            )
        points = camera.world_to_camera(vertices.detach().to("cpu", torch.float32))
        focal = np.broadcast_to(camera.focal_tensor(torch.float64).reshape(-1).numpy(), (n_batch,))
        return Projected(
            uvz=camera.camera_to_image(points).double().numpy(),
            normals=vertex_normals(points, faces).numpy(),
            focal=np.ascontiguousarray(focal),
            center=camera.center,
            image_size=(int(camera.image_size[0]), int(camera.image_size[1])),
            orthographic=bool(camera.orthographic),
        )

    def render(
        self, vertices: Tensor, faces: Tensor, camera: Camera, colors: Tensor | None = None
    ) -> RenderOutput:
        """Render ``[B,V,3]`` vertices (``[V,3]`` is treated as B=1); see :meth:`MeshRenderer.render`."""
        vertices, faces = _check_mesh(vertices, faces)  # once per frame: it scans every face index
        projected = self._project(vertices, faces, camera)
        colors_np = _colors(colors, projected)
        image, arrays = draw(projected, faces.numpy(), self.settings, colors_np, self.cull_backfaces)
        frags = _fragments(arrays)
        return RenderOutput(
            image=torch.from_numpy(image),
            depth=frags.depth,
            mask=frags.mask,
            face_ids=frags.face_ids,
            bary=frags.bary,
            normals=(
                _pixel_normals(torch.from_numpy(projected.normals), faces, frags)
                if self.output_normals
                else None
            ),
        )


    def render_uint8(
        self, vertices: Tensor, faces: Tensor, camera: Camera, colors: Tensor | None = None
    ) -> np.ndarray:
        """:meth:`MeshRenderer.render_uint8` in one pass (:func:`render.raster_core.draw_uint8`: the same frames,
        bit for bit, with a tenth of the memory), as :mod:`render.worker` draws them."""
        vertices, faces = _check_mesh(vertices, faces)
        projected = self._project(vertices, faces, camera)
        return draw_uint8(
            projected, faces.numpy(), self.settings, _colors(colors, projected), self.cull_backfaces
        )


def _colors(colors: Tensor | None, projected: Projected) -> np.ndarray | None:
    """Per-vertex albedo ``[V,3]`` or ``[B,V,3]`` as the kernels take it, ``[1 or B,V,3]`` float32, checked."""
    if colors is None:
        return None
    n_batch, n_verts = projected.uvz.shape[:2]
    colors = colors.detach().to("cpu", torch.float32)
    colors = colors[None] if colors.ndim == 2 else colors
    if colors.ndim != 3 or colors.shape[1:] != (n_verts, 3) or colors.shape[0] not in (1, n_batch):
        raise ValueError(
            f"TorchRasterizer.render: `colors` must be [V,3] or [B,V,3] with V={n_verts}, got "
            f"{tuple(colors.shape)}."
        )
    return colors.numpy()


def _pixel_normals(normals: Tensor, faces: Tensor, frags: Fragments) -> Tensor:
    """Interpolated unit normals ``[B,H,W,3]``, flipped on back-facing faces as in the shading kernel.

    numpy over the covered pixels only: torch ops of this size would wake torch's thread pool (see
    :func:`rasterize`), which costs more than the work on a small machine.
    """
    face_ids = frags.face_ids.numpy()
    b, i, j = np.nonzero(face_ids >= 0)
    f = face_ids[b, i, j]
    corner = normals.numpy()[b[:, None], faces.numpy()[f]]  # [P,3 corners,3]
    pixel = np.einsum("pk,pkc->pc", frags.bary.numpy()[b, i, j], corner)
    scale = 1.0 / np.maximum(np.linalg.norm(pixel, axis=-1), 1e-12)
    pixel *= np.where(frags.front_facing.numpy()[b, f], scale, -scale)[:, None]
    out = np.zeros(face_ids.shape + (3,), np.float32)
    out[b, i, j] = pixel
    return torch.from_numpy(out)


def _check_mesh(vertices: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
    if vertices.ndim == 2:
        vertices = vertices[None]
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"render: `vertices` must be [B,V,3], got shape {tuple(vertices.shape)}.")
    if not vertices.is_floating_point():
        raise ValueError("render: `vertices` must be a floating point tensor.")
    faces = torch.as_tensor(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.is_floating_point():
        raise ValueError(
            f"render: `faces` must be an integer [F,3] tensor, got {faces.dtype} {tuple(faces.shape)}."
        )
    faces = faces.to("cpu", torch.int64)
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[1]):
        raise ValueError(f"render: `faces` index vertices outside [0, {vertices.shape[1]}).")
    return vertices, faces


def to_uint8(output: RenderOutput, background: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Composite RGBA over a background colour and quantise: ``[B,H,W,3]`` uint8 (for :class:`VideoWriter`).

    Args:
        output: a :class:`RenderOutput`.
        background: RGB in [0,1] shown where alpha is 0.
    """
    image = output.image.detach().to("cpu", torch.float32).numpy()
    if image.ndim != 4 or image.shape[-1] != 4:
        raise ValueError(f"to_uint8: `output.image` must be [B,H,W,4], got shape {image.shape}.")
    return composite(image, tuple(float(c) for c in background))
