"""Mesh renderer interface and the CPU z-buffer rasterizer (torch transforms, numba scan conversion and shading).

Pipeline of :class:`TorchRasterizer`: vertices are moved to camera space and projected in torch (vectorised);
:func:`rasterize` scan-converts the triangles with the numba kernels in :mod:`render._raster_kernel` and returns
per-pixel face ids, perspective-correct barycentrics and depth; smooth vertex normals (torch) and optional vertex
colours are interpolated at the covered pixels and shaded by a fused numba kernel (:mod:`render._shade_kernel`)
that implements the torch reference formulas of :mod:`render.shading`. This path has no autograd;
:mod:`render.differentiable` keeps its visibility pass and redoes the rest in torch for gradients.

Sampling: pixel ``(i, j)`` is covered by a triangle when its centre ``(j + 0.5, i + 0.5)`` lies inside it; centres
exactly on an edge follow the top-left rule, so meshes render without cracks or double coverage (see
:mod:`render._raster_kernel`). Faces with a vertex at depth <= ``ZNEAR`` are dropped whole (no near clipping).
There is no anti-aliasing: the mask is binary.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
import torch
from torch import Tensor

from render._raster_kernel import bin_faces, raster_bands, setup_faces
from render._shade_kernel import MODE_LAMBERT, MODE_NORMALS, MODE_PHONG, composite_uint8, shade_pixels
from render.camera import Camera
from render.shading import DEFAULT_ALBEDO, check_shading_options, vertex_normals

__all__ = ["Fragments", "RenderOutput", "MeshRenderer", "TorchRasterizer", "rasterize", "to_uint8", "ZNEAR"]

ZNEAR = 1e-4  # metres; faces closer than this to the camera plane are dropped
_MODES = {"phong": MODE_PHONG, "lambert": MODE_LAMBERT, "normals": MODE_NORMALS}


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


def _band_order(n_bands: int, n_threads: int) -> np.ndarray:
    # numba's prange hands each thread a contiguous chunk; interleave bands so every thread gets rows from
    # the top, middle and bottom of the image (a face is rarely uniform over the frame).
    order = [np.arange(k, n_bands, n_threads) for k in range(min(n_threads, n_bands))]
    return np.concatenate(order).astype(np.int64)


def _prefer_workqueue_layer() -> None:
    """Use numba's ``workqueue`` threading layer unless the user chose one (``NUMBA_THREADING_LAYER``).

    With numba's default pick (OpenMP here, sharing torch's libgomp) idle workers spin between parallel regions.
    A frame alternates short numba regions with torch, Python and ffmpeg work, and on a small or shared machine
    the spinning threads take the cores that work needs: on 2 loaded cores, rasterizing 256x256 cost 16 ms of
    CPU with OpenMP and 3.6 ms with workqueue. ``OMP_WAIT_POLICY`` cannot help from here (libgomp reads it when
    torch is imported). The layer is picked at numba's first parallel launch or ``numba.set_num_threads`` call,
    hence this runs at import. workqueue is fork-safe but rejects concurrent launches from several Python
    threads, so every launch of this module holds ``_LAUNCH_LOCK``.
    """
    if numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "workqueue"


_prefer_workqueue_layer()
_LAUNCH_LOCK = threading.Lock()


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
    uvz_np = np.ascontiguousarray(uvz.detach().to("cpu", torch.float64).numpy())
    faces_np = np.ascontiguousarray(faces.detach().to("cpu", torch.int64).numpy())
    n_batch, n_faces = uvz_np.shape[0], faces_np.shape[0]
    fixed = np.empty((n_batch, n_faces, 6), np.int64)
    keys = np.empty((n_batch, n_faces, 3), np.float64)
    inv_area = np.empty((n_batch, n_faces), np.float64)
    bbox = np.empty((n_batch, n_faces, 4), np.int64)
    flags = np.empty((n_batch, n_faces), np.int8)
    zbuf = np.empty((n_batch, height, width), np.float32)  # every pixel is written by the kernel
    face_ids = np.empty((n_batch, height, width), np.int64)
    bary = np.empty((n_batch, height, width, 3), np.float32)
    cull, persp = bool(cull_backfaces), bool(perspective)
    with _LAUNCH_LOCK:
        setup_faces(
            uvz_np, faces_np, height, width, cull, persp, float(znear), fixed, keys, inv_area, bbox, flags
        )
        n_threads = numba.get_num_threads()
        # Bands of <= 16 rows keep the band-local z-buffer in cache; >= ~4 bands per thread balance the load.
        band_height = max(1, min(16, -(-height // (4 * n_threads))))
        n_bands = -(-height // band_height)
        offsets, items = bin_faces(bbox, flags, band_height, n_bands)
        order = _band_order(n_bands, n_threads)
        raster_bands(
            fixed,
            keys,
            inv_area,
            bbox,
            flags,
            offsets,
            items,
            order,
            band_height,
            persp,
            zbuf,
            face_ids,
            bary,
        )
    return Fragments(
        face_ids=torch.from_numpy(face_ids),
        bary=torch.from_numpy(bary),
        depth=torch.from_numpy(zbuf),
        front_facing=torch.from_numpy(flags == 1),
        # numpy, not torch: a torch op this size would wake (and leave spinning) torch's OpenMP pool
        mask=torch.from_numpy(face_ids >= 0),
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
        light = np.asarray(self.light_direction, np.float64)
        self._light = light / np.linalg.norm(light)

    def render(
        self, vertices: Tensor, faces: Tensor, camera: Camera, colors: Tensor | None = None
    ) -> RenderOutput:
        """Render ``[B,V,3]`` vertices (``[V,3]`` is treated as B=1); see :meth:`MeshRenderer.render`."""
        vertices, faces = _check_mesh(vertices, faces)
        n_batch = max(vertices.shape[0], camera.batch_size)
        if camera.batch_size not in (1, n_batch) or vertices.shape[0] not in (1, n_batch):
            raise ValueError(
                f"TorchRasterizer.render: vertex batch {vertices.shape[0]} and camera batch {camera.batch_size} "
                "must match or be 1."
            )
        height, width = camera.image_size
        points = camera.world_to_camera(vertices.detach().to("cpu", torch.float32))
        frags = rasterize(
            camera.camera_to_image(points),
            faces,
            camera.image_size,
            not camera.orthographic,
            self.cull_backfaces,
        )

        normals = vertex_normals(points, faces)
        n_verts = points.shape[1]
        if colors is None:
            colors_np = np.zeros((0, n_verts, 3), np.float32)
        else:
            colors = colors.detach().to("cpu", torch.float32)
            colors = colors[None] if colors.ndim == 2 else colors
            if colors.ndim != 3 or colors.shape[1:] != (n_verts, 3) or colors.shape[0] not in (1, n_batch):
                raise ValueError(
                    f"TorchRasterizer.render: `colors` must be [V,3] or [B,V,3] with V={n_verts}, got "
                    f"{tuple(colors.shape)}."
                )
            colors_np = np.ascontiguousarray(colors.numpy())
        focal = np.broadcast_to(camera.focal_tensor(torch.float64).reshape(-1).numpy(), (n_batch,))
        cx, cy = camera.center
        image = np.empty((n_batch, height, width, 4), np.float32)
        args = (
            frags.face_ids.numpy(),
            frags.bary.numpy(),
            np.ascontiguousarray(faces.numpy()),
            np.ascontiguousarray(normals.numpy()),
            colors_np,
            np.asarray(DEFAULT_ALBEDO, np.float64),
            frags.front_facing.numpy(),
            _MODES[self.shading],
            self._light,
            self.ambient,
            self.specular,
            self.shininess,
            np.asarray(self.background, np.float64),
            bool(camera.orthographic),
            np.ascontiguousarray(focal, np.float64),
            float(cx),
            float(cy),
            image,
        )
        with _LAUNCH_LOCK:
            shade_pixels(*args)
        return RenderOutput(
            image=torch.from_numpy(image),
            depth=frags.depth,
            mask=frags.mask,
            face_ids=frags.face_ids,
            bary=frags.bary,
            normals=_pixel_normals(normals, faces, frags) if self.output_normals else None,
        )


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
    image = np.ascontiguousarray(output.image.detach().to("cpu", torch.float32).numpy())
    if image.ndim != 4 or image.shape[-1] != 4:
        raise ValueError(f"to_uint8: `output.image` must be [B,H,W,4], got shape {image.shape}.")
    out = np.empty(image.shape[:3] + (3,), np.uint8)
    composite_uint8(image, np.asarray([float(c) for c in background], np.float64), out)
    return out
