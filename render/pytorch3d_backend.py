"""Differentiable mesh renderer on pytorch3d's ``MeshRasterizer``, under the camera convention of ``render.camera``.

pytorch3d only rasterizes here (face ids, barycentrics, depth); shading is the torch reference of
:mod:`render.shading` applied to the interpolated normals, with the same rules as :class:`TorchRasterizer`
(camera-fixed headlight, normals flipped on faces seen from behind, view direction through the pixel centre,
result clamped to [0,1]), so both backends agree pixel for pixel up to edge sampling. Everything after the
rasterizer is differentiable torch, and pytorch3d back-propagates through the barycentrics and depth, so gradients
reach vertex positions and colours (on the GPU as well as the CPU).

pytorch3d is optional and version-fragile: it is imported when a :class:`Pytorch3DRenderer` is constructed, and
``make test-pytorch3d`` builds a separate venv (``.venv-p3d``) where it is installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F_
from torch import Tensor

from render.camera import Camera
from render.rasterizer import MeshRenderer, RenderOutput
from render.shading import (
    DEFAULT_ALBEDO,
    blinn_phong,
    check_shading_options,
    interpolate,
    lambert,
    vertex_normals,
)
from talk.errors import UserError

__all__ = ["Pytorch3DNotInstalledError", "Pytorch3DRenderer", "to_pytorch3d_cameras"]

_INSTALL_HINT = (
    "pytorch3d is not installed in this environment (it has no build for the CPU torch of .venv); run "
    "`make test-pytorch3d` to build .venv-p3d with it, or in a separate venv `pip install torch==2.12.1` then "
    "`pip install easypytorch3d==0.7.9.post1 iopath`."
)

# Camera frame change OpenGL-style (x right, y up, looking down -z) -> pytorch3d (x left, y up, looking down +z):
# a half turn about y.
_FLIP_XZ = (-1.0, 1.0, -1.0)


class Pytorch3DNotInstalledError(UserError, ImportError):
    """pytorch3d cannot be imported; the message says how to get it."""


def _import_pytorch3d() -> dict[str, Any]:
    try:
        from pytorch3d.renderer import (
            MeshRasterizer,
            OrthographicCameras,
            PerspectiveCameras,
            RasterizationSettings,
        )
        from pytorch3d.structures import Meshes
    except ImportError as err:  # also catches a pytorch3d built against another torch (undefined symbols)
        raise Pytorch3DNotInstalledError(f"Pytorch3DRenderer: {_INSTALL_HINT} ({err})") from err
    return {
        "MeshRasterizer": MeshRasterizer,
        "OrthographicCameras": OrthographicCameras,
        "PerspectiveCameras": PerspectiveCameras,
        "RasterizationSettings": RasterizationSettings,
        "Meshes": Meshes,
    }


def to_pytorch3d_cameras(
    camera: Camera, device: torch.device | str = "cpu", batch_size: int | None = None
) -> Any:
    """Convert a :class:`Camera` to pytorch3d ``PerspectiveCameras`` / ``OrthographicCameras`` (NDC intrinsics).

    pytorch3d's view space is ours turned half a turn about y (``X_view = X_world @ R + T``), so
    ``R_p3d = R^T diag(-1,1,-1)`` and ``T_p3d = T * (-1,1,-1)``. Its NDC has +x left and +y up, with the shorter
    image side spanning [-1,1] (``s = min(H,W)/2`` pixels per NDC unit) and pixel centres at
    ``x = (W/2 - (j+0.5)) / s``; our pixel coordinate ``u = cx - f X/Z`` (X left) therefore maps to
    ``x_ndc = (f/s) X/Z + (W/2 - cx)/s``: focal ``f/s`` and principal point ``((W/2-cx)/s, (H/2-cy)/s)`` in NDC.
    The orthographic case is the same without the division by Z.

    Args:
        camera: a batch of B cameras (see :mod:`render.camera` for the convention).
        device: device of the returned cameras.
        batch_size: repeat a single camera this many times (pytorch3d does not broadcast a camera batch of 1
            over a batch of meshes); ``None`` keeps B.

    Returns:
        A pytorch3d cameras object with B (or ``batch_size``) cameras (``in_ndc=True``); it needs ``image_size=camera.image_size``
        in the rasterization settings.
    """
    p3d = _import_pytorch3d()
    height, width = camera.image_size
    scale = min(height, width) / 2.0
    n_cams = camera.batch_size if batch_size is None else int(batch_size)
    if camera.batch_size not in (1, n_cams):
        raise ValueError(
            f"to_pytorch3d_cameras: cannot repeat a batch of {camera.batch_size} cameras to {n_cams}; pass "
            "one camera or one per mesh."
        )
    flip = torch.tensor(_FLIP_XZ, dtype=torch.float32, device=device)
    R = (camera.R.to(device, torch.float32).transpose(1, 2) * flip).expand(n_cams, 3, 3)  # R^T @ diag(flip)
    T = (camera.T.to(device, torch.float32) * flip).expand(n_cams, 3)
    focal = camera.focal_tensor(torch.float32).reshape(-1).to(device).expand(n_cams) / scale
    cx, cy = camera.center
    principal = torch.tensor([[(width / 2.0 - cx) / scale, (height / 2.0 - cy) / scale]], device=device)
    cls = p3d["OrthographicCameras"] if camera.orthographic else p3d["PerspectiveCameras"]
    return cls(
        focal_length=focal[:, None].expand(n_cams, 2),
        principal_point=principal.expand(n_cams, 2),
        R=R,
        T=T,
        in_ndc=True,
        device=device,
    )


def _front_facing(points: Tensor, faces: Tensor, orthographic: bool) -> Tensor:
    """``[B,F]`` True where the face's right-hand normal points towards the camera (OpenGL camera space)."""
    v0, v1, v2 = points[:, faces[:, 0]], points[:, faces[:, 1]], points[:, faces[:, 2]]
    normal = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)
    if orthographic:
        return normal[..., 2] > 0  # the view direction is +z everywhere
    return (normal * v0).sum(-1) < 0  # the camera sits at the origin: towards it is -v0


class Pytorch3DRenderer(MeshRenderer):
    """Differentiable renderer: pytorch3d ``MeshRasterizer`` + the shading of :class:`TorchRasterizer`.

    Same outputs and constructor options as :class:`render.rasterizer.TorchRasterizer`; works on whatever device
    the vertices are on (CPU or CUDA), and keeps the autograd graph to vertices and colours. pytorch3d's CPU
    rasterizer is slow (naive, one thread: 37 s per 512x512 frame and 9 s at 256x256 for a FLAME-size mesh on
    our 2-core CPU, ~1500x TorchRasterizer): use it on a GPU, for small images, or where gradients are needed.

    Args:
        shading: ``"phong"`` (Blinn-Phong), ``"lambert"`` (diffuse only) or ``"normals"`` (camera-space normals
            mapped to RGB as ``n * 0.5 + 0.5``).
        light_direction: direction towards the light in camera space (x right, y up, z towards the viewer).
        ambient: ambient fraction of the albedo, in [0,1].
        specular: strength of the white Blinn-Phong highlight (``"phong"`` only).
        shininess: Blinn-Phong exponent (``"phong"`` only).
        background: RGB of empty pixels in [0,1].
        cull_backfaces: skip faces that are clockwise as seen by the camera.
        bin_size: pytorch3d's coarse-to-fine bin size; ``None`` lets pytorch3d choose (naive on the CPU).
        max_faces_per_bin: pytorch3d's per-bin face limit for coarse rasterization; ``None`` = its default.
        output_normals: also return per-pixel camera-space normals in ``RenderOutput.normals``.

    Raises:
        Pytorch3DNotInstalledError: (an ImportError) when pytorch3d cannot be imported.
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
        bin_size: int | None = None,
        max_faces_per_bin: int | None = None,
        output_normals: bool = False,
    ) -> None:
        check_shading_options("Pytorch3DRenderer", shading, light_direction, background)
        self._p3d = _import_pytorch3d()
        self.shading = shading
        self.light_direction = tuple(float(x) for x in light_direction)
        self.ambient = float(ambient)
        self.specular = float(specular)
        self.shininess = float(shininess)
        self.background = tuple(float(x) for x in background)
        self.cull_backfaces = bool(cull_backfaces)
        self.bin_size = bin_size
        self.max_faces_per_bin = max_faces_per_bin
        self.output_normals = bool(output_normals)

    def render(
        self, vertices: Tensor, faces: Tensor, camera: Camera, colors: Tensor | None = None
    ) -> RenderOutput:
        """Render ``[B,V,3]`` vertices (``[V,3]`` is treated as B=1); see :meth:`MeshRenderer.render`.

        Outputs are on the vertices' device; ``image`` and ``depth`` carry gradients to ``vertices`` and
        ``colors``.
        """
        vertices, faces = self._check(vertices, faces)
        device = vertices.device
        n_batch = max(vertices.shape[0], camera.batch_size)
        if camera.batch_size not in (1, n_batch) or vertices.shape[0] not in (1, n_batch):
            raise ValueError(
                f"Pytorch3DRenderer.render: vertex batch {vertices.shape[0]} and camera batch "
                f"{camera.batch_size} must match or be 1."
            )
        n_verts, n_faces = vertices.shape[1], faces.shape[0]
        vertices = vertices.float().expand(n_batch, -1, -1)
        faces = faces.to(device)
        colors = self._check_colors(colors, n_verts, n_batch, device)
        height, width = camera.image_size

        cameras = to_pytorch3d_cameras(camera, device, n_batch)
        settings = self._p3d["RasterizationSettings"](
            image_size=(int(height), int(width)),
            blur_radius=0.0,
            faces_per_pixel=1,
            bin_size=self.bin_size,
            max_faces_per_bin=self.max_faces_per_bin,
            perspective_correct=not camera.orthographic,
            cull_backfaces=self.cull_backfaces,
        )
        rasterizer = self._p3d["MeshRasterizer"](cameras=cameras, raster_settings=settings)
        meshes = self._p3d["Meshes"](verts=vertices, faces=faces[None].expand(n_batch, -1, -1))
        frags = rasterizer(meshes)

        packed = frags.pix_to_face[..., 0]  # [B,H,W] index into the packed faces of all meshes, -1 empty
        mask = packed >= 0
        offset = torch.arange(n_batch, device=device).view(-1, 1, 1) * n_faces
        face_ids = torch.where(mask, packed - offset, torch.full_like(packed, -1))
        bary = frags.bary_coords[..., 0, :] * mask[..., None]  # [B,H,W,3]
        depth = torch.where(mask, frags.zbuf[..., 0], torch.full_like(frags.zbuf[..., 0], float("inf")))

        # Shade in our camera space (X_cam = X R^T + T) with the shared torch formulas (the numba kernel's
        # reference); written out rather than Camera.world_to_camera so that it runs on the vertices' device.
        R = camera.R.to(device, torch.float32)
        points = vertices @ R.transpose(1, 2) + camera.T.to(device, torch.float32)[:, None]
        rgb, normals = self._shade(points, faces, face_ids, bary, mask, colors, camera)
        background = torch.tensor(self.background, dtype=rgb.dtype, device=device)
        image_rgb = torch.where(mask[..., None], rgb, background)
        image = torch.cat([image_rgb, mask[..., None].to(image_rgb.dtype)], dim=-1)
        return RenderOutput(
            image=image,
            depth=depth,
            mask=mask,
            face_ids=face_ids,
            bary=bary,
            normals=normals * mask[..., None].to(normals.dtype) if self.output_normals else None,
        )

    def _shade(
        self,
        points: Tensor,
        faces: Tensor,
        face_ids: Tensor,
        bary: Tensor,
        mask: Tensor,
        colors: Tensor | None,
        camera: Camera,
    ) -> tuple[Tensor, Tensor]:
        """``[B,H,W,3]`` shaded RGB in [0,1] and unit normals at covered pixels (arbitrary elsewhere)."""
        normals = interpolate(vertex_normals(points, faces), faces, face_ids, bary)
        # Two-sided lighting as in TorchRasterizer: a face seen from behind is lit with its flipped normal.
        front = _front_facing(points, faces, camera.orthographic)
        sign = torch.where(front.gather(1, face_ids.clamp(min=0).flatten(1)), 1.0, -1.0).view_as(face_ids)
        normals = F_.normalize(normals, dim=-1, eps=1e-12) * sign[..., None].to(normals.dtype)
        if self.shading == "normals":
            return (normals * 0.5 + 0.5).clamp(0.0, 1.0), normals
        if colors is None:
            albedo = torch.tensor(DEFAULT_ALBEDO, dtype=normals.dtype, device=normals.device)
        else:
            albedo = interpolate(colors, faces, face_ids, bary)
        if self.shading == "lambert":
            rgb = lambert(normals, albedo, self.light_direction, self.ambient)
        else:
            rgb = blinn_phong(
                normals,
                self._view_dirs(camera, mask.shape, normals),
                albedo,
                self.light_direction,
                self.ambient,
                self.specular,
                self.shininess,
            )
        return rgb.clamp(0.0, 1.0), normals

    @staticmethod
    def _view_dirs(camera: Camera, shape: torch.Size, like: Tensor) -> Tensor:
        """``[B or 1,H,W,3]`` unit vectors towards the camera through each pixel centre (camera space)."""
        height, width = shape[1], shape[2]
        if camera.orthographic:
            return torch.tensor([0.0, 0.0, 1.0], dtype=like.dtype, device=like.device).expand(
                1, height, width, 3
            )
        cx, cy = camera.center
        focal = camera.focal_tensor(like.dtype).to(like.device).view(-1, 1, 1)
        cols = torch.arange(width, dtype=like.dtype, device=like.device) + 0.5
        rows = torch.arange(height, dtype=like.dtype, device=like.device) + 0.5
        x = (-(cols - cx)).view(1, 1, width) / focal
        y = (rows - cy).view(1, height, 1) / focal
        x, y = torch.broadcast_tensors(x, y)
        return F_.normalize(torch.stack([x, y, torch.ones_like(x)], dim=-1), dim=-1)

    @staticmethod
    def _check(vertices: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
        if vertices.ndim == 2:
            vertices = vertices[None]
        if vertices.ndim != 3 or vertices.shape[-1] != 3 or not vertices.is_floating_point():
            raise ValueError(
                f"Pytorch3DRenderer.render: `vertices` must be a float [B,V,3] tensor, got {vertices.dtype} "
                f"{tuple(vertices.shape)}."
            )
        faces = torch.as_tensor(faces)
        if faces.ndim != 2 or faces.shape[1] != 3 or faces.is_floating_point():
            raise ValueError(
                f"Pytorch3DRenderer.render: `faces` must be an integer [F,3] tensor, got {faces.dtype} "
                f"{tuple(faces.shape)}."
            )
        faces = faces.long()
        if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[1]):
            raise ValueError(
                f"Pytorch3DRenderer.render: `faces` index vertices outside [0, {vertices.shape[1]})."
            )
        return vertices, faces

    @staticmethod
    def _check_colors(
        colors: Tensor | None, n_verts: int, n_batch: int, device: torch.device
    ) -> Tensor | None:
        if colors is None:
            return None
        colors = colors[None] if colors.ndim == 2 else colors
        if colors.ndim != 3 or colors.shape[1:] != (n_verts, 3) or colors.shape[0] not in (1, n_batch):
            raise ValueError(
                f"Pytorch3DRenderer.render: `colors` must be [V,3] or [B,V,3] with V={n_verts}, got "
                f"{tuple(colors.shape)}."
            )
        return colors.to(device, torch.float32).expand(n_batch, -1, -1)
