"""Differentiable rendering on top of the numba z-buffer (nvdiffrast-style), and a soft silhouette for fitting.

Visibility is not differentiable and stays in numba: :func:`render.rasterizer.rasterize` picks the face seen at
each pixel centre. Everything after that is recomputed in torch from the projected vertex positions: the
barycentrics of every covered pixel centre (perspective-correct), its depth, interpolated attributes, normals and
the shading. Gradients therefore flow to vertex positions and per-vertex attributes *inside* the silhouette.
The hard silhouette has no gradient (a pixel is covered or not); for fitting silhouettes use
:func:`soft_silhouette` (SoftRas / pytorch3d style: a sigmoid of the signed squared distance of each pixel centre
to each nearby triangle), also available as the alpha channel of :class:`DifferentiableRasterizer`.

The numba pass snaps vertices to 1/256 pixel while the torch barycentrics use the exact positions, so the two
differ by at most that snapping (barycentrics agree to ~1e-3 on average); coverage is the numba one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F_
from torch import Tensor

from render.camera import Camera
from render.rasterizer import ZNEAR, Fragments, RenderOutput, TorchRasterizer, _check_mesh, rasterize
from render.shading import DEFAULT_ALBEDO, blinn_phong, lambert, vertex_normals

__all__ = ["DiffFragments", "DifferentiableRasterizer", "rasterize_differentiable", "soft_silhouette"]

# A face is not evaluated at pixels so far outside it that its sigmoid is below this (truncation error <= 1e-5).
_SOFT_EPS = 1e-5


@dataclass(frozen=True, eq=False)
class DiffFragments(Fragments):
    """:class:`Fragments` whose barycentrics and depth carry gradients w.r.t. the projected vertices.

    ``face_ids``, ``mask`` and ``front_facing`` come from the numba pass (no gradient); ``bary`` ``[B,H,W,3]``
    and ``depth`` ``[B,H,W]`` are dense, differentiable views of the per-pixel values below.

    Attributes:
        faces: ``[F,3]`` long vertex indices (on the vertices' device).
        pixels: ``[P,3]`` long ``(b, row, col)`` of the P covered pixels.
        pixel_faces: ``[P]`` long visible face of each covered pixel.
        pixel_bary: ``[P,3]`` perspective-correct barycentrics at the pixel centres (differentiable).
        pixel_depth: ``[P]`` camera-space depth at the pixel centres (differentiable).
        n_verts: V, the number of vertices per mesh.
    """

    faces: Tensor
    pixels: Tensor
    pixel_faces: Tensor
    pixel_bary: Tensor
    pixel_depth: Tensor
    n_verts: int

    def interpolate_pixels(self, attributes: Tensor) -> Tensor:
        """Interpolate per-vertex attributes at the covered pixels only.

        Args:
            attributes: ``[B,V,C]`` or ``[V,C]`` (shared by the batch) per-vertex values.

        Returns:
            ``[P,C]`` values, differentiable w.r.t. ``attributes`` and the vertex positions.
        """
        n_batch = self.face_ids.shape[0]
        if attributes.ndim == 2:
            attributes = attributes[None]
        if (
            attributes.ndim != 3
            or attributes.shape[1] != self.n_verts
            or attributes.shape[0] not in (1, n_batch)
        ):
            raise ValueError(
                f"interpolate: `attributes` must be [V,C] or [B,V,C] with V={self.n_verts} and B in (1, "
                f"{n_batch}), got {tuple(attributes.shape)}."
            )
        rows = self.pixels[:, 0] if attributes.shape[0] > 1 else torch.zeros_like(self.pixels[:, 0])
        flat = attributes.reshape(-1, attributes.shape[-1])
        gathered = flat[self.faces[self.pixel_faces] + rows[:, None] * self.n_verts]  # [P,3,C]
        return (gathered * self.pixel_bary.to(attributes.dtype)[..., None]).sum(dim=1)

    def to_image(self, values: Tensor, fill: float | Sequence[float] = 0.0) -> Tensor:
        """Scatter per-pixel values ``[P,C]`` into a ``[B,H,W,C]`` image filled with ``fill`` elsewhere."""
        n_batch, height, width = self.face_ids.shape
        base = torch.as_tensor(fill, dtype=values.dtype, device=values.device)
        image = base.expand(n_batch, height, width, values.shape[-1]).clone()
        b, i, j = self.pixels.unbind(-1)
        return image.index_put((b, i, j), values)

    def interpolate(self, attributes: Tensor) -> Tensor:
        """Barycentric interpolation into an image: ``[B,V,C]`` (or ``[V,C]``) -> ``[B,H,W,C]``, 0 where empty."""
        return self.to_image(self.interpolate_pixels(attributes))


def rasterize_differentiable(
    uvz: Tensor,
    faces: Tensor,
    image_size: tuple[int, int],
    perspective: bool = True,
    cull_backfaces: bool = False,
    znear: float = ZNEAR,
) -> DiffFragments:
    """Numba visibility, then torch barycentrics and depth that are differentiable w.r.t. ``uvz``.

    Args:
        uvz: ``[B,V,3]`` pixel coordinates and depth per vertex (:meth:`Camera.project`), may require grad.
        faces: ``[F,3]`` long vertex indices.
        image_size: ``(H, W)``.
        perspective: perspective-correct barycentrics and depth (False for orthographic cameras).
        cull_backfaces: drop faces that are clockwise as seen by the camera.
        znear: faces with a vertex at depth <= ``znear`` are dropped.

    Returns:
        :class:`DiffFragments` on ``uvz``'s device.
    """
    uvz, faces = _check_mesh(uvz, faces)
    hard = rasterize(uvz.detach(), faces, image_size, perspective, cull_backfaces, znear)
    device, dtype = uvz.device, uvz.dtype
    n_batch, n_verts = uvz.shape[0], uvz.shape[1]
    faces = faces.to(device)
    face_ids = hard.face_ids.to(device)
    mask = hard.mask.to(device)
    pixels = torch.nonzero(mask)  # [P,3] (b, row, col)
    b, i, j = pixels.unbind(-1)
    pixel_faces = face_ids[b, i, j]
    corners = uvz.reshape(-1, 3)[faces[pixel_faces] + b[:, None] * n_verts]  # [P,3 vertices,3 (u,v,depth)]
    x, y, z = corners.unbind(-1)
    px = j.to(dtype)[:, None] + 0.5
    py = i.to(dtype)[:, None] + 0.5
    # Edge function of the edge opposite each vertex = its unnormalised screen-space weight (as in the kernel).
    xa, ya = x.roll(-1, dims=1), y.roll(-1, dims=1)  # vertex k+1
    xb, yb = x.roll(-2, dims=1), y.roll(-2, dims=1)  # vertex k+2
    edges = (xb - xa) * (py - ya) - (yb - ya) * (px - xa)  # [P,3]
    screen = edges / edges.sum(dim=1, keepdim=True)  # the sum is twice the signed area: weights sum to 1
    if perspective:
        q = screen / z
        inv_depth = q.sum(dim=1, keepdim=True)
        bary = q / inv_depth
        depth = 1.0 / inv_depth[:, 0]
    else:
        bary = screen
        depth = (screen * z).sum(dim=1)
    height, width = int(image_size[0]), int(image_size[1])
    dense_bary = torch.zeros(n_batch, height, width, 3, dtype=dtype, device=device).index_put((b, i, j), bary)
    dense_depth = torch.full((n_batch, height, width), math.inf, dtype=dtype, device=device)
    return DiffFragments(
        face_ids=face_ids,
        bary=dense_bary,
        depth=dense_depth.index_put((b, i, j), depth),
        front_facing=hard.front_facing.to(device),
        mask=mask,
        faces=faces,
        pixels=pixels,
        pixel_faces=pixel_faces,
        pixel_bary=bary,
        pixel_depth=depth,
        n_verts=n_verts,
    )


def soft_silhouette(
    uvz: Tensor,
    faces: Tensor,
    image_size: tuple[int, int],
    sigma: float = 1.0,
    cull_backfaces: bool = False,
    znear: float = ZNEAR,
) -> Tensor:
    """Soft coverage ``[B,H,W]`` in (0,1), differentiable w.r.t. the projected vertices (SoftRas aggregation).

    Each face gives pixel centre p the probability ``D = sigmoid(s * d^2 / sigma)`` where d is the distance (in
    pixels) from p to the face's projected outline and s = +1 inside, -1 outside; faces combine as
    ``1 - prod(1 - D)``. Depth plays no role (a silhouette is a union). As in SoftRas, pixels on an edge shared
    by two faces get ``1 - sigmoid(x) sigmoid(-x) >= 0.75`` rather than 1 when ``sigma`` is large. Faces are only evaluated within the
    distance where D < 1e-5, so the cost is the sum over faces of their bounding box grown by
    ``sqrt(11.5 * sigma)`` pixels on each side: meant for fitting at small sizes (a 10k-face mesh at 256x256
    with sigma=1 takes ~1.1 s forward and as much backward on 2 cores).

    Args:
        uvz: ``[B,V,3]`` pixel coordinates and depth per vertex (:meth:`Camera.project`).
        faces: ``[F,3]`` long vertex indices.
        image_size: ``(H, W)``.
        sigma: sharpness in squared pixels: the edge blur is about ``sqrt(sigma)`` pixels wide.
        cull_backfaces: ignore faces that are clockwise as seen by the camera.
        znear: faces with a vertex at depth <= ``znear`` are ignored.
    """
    if not sigma > 0:
        raise ValueError(f"soft_silhouette: `sigma` must be positive (squared pixels), got {sigma}.")
    uvz, faces = _check_mesh(uvz, faces)
    device, dtype = uvz.device, uvz.dtype
    faces = faces.to(device)
    height, width = int(image_size[0]), int(image_size[1])
    n_batch = uvz.shape[0]
    tri = uvz[:, faces]  # [B,F,3,3]
    radius = math.sqrt(sigma * math.log(1.0 / _SOFT_EPS))
    with torch.no_grad():  # candidate (face, pixel) pairs; the selection itself carries no gradient
        x, y, z = tri.detach().unbind(-1)
        dx1, dy1 = x[..., 1] - x[..., 0], y[..., 1] - y[..., 0]
        area = dx1 * (y[..., 2] - y[..., 0]) - dy1 * (x[..., 2] - x[..., 0])
        ok = (z > znear).all(-1) & (area != 0) & torch.isfinite(tri.detach()).all(-1).all(-1)
        if cull_backfaces:
            ok &= area < 0  # counter-clockwise seen by the camera is negative area in y-down pixels
        c_lo = torch.ceil(x.min(-1).values - radius - 0.5).clamp(0, width)
        c_hi = torch.floor(x.max(-1).values + radius - 0.5).clamp(-1, width - 1)
        r_lo = torch.ceil(y.min(-1).values - radius - 0.5).clamp(0, height)
        r_hi = torch.floor(y.max(-1).values + radius - 0.5).clamp(-1, height - 1)
        n_cols = (c_hi - c_lo + 1).clamp_min(0).long()
        n_rows = (r_hi - r_lo + 1).clamp_min(0).long()
        counts = torch.where(ok, n_cols * n_rows, torch.zeros_like(n_cols)).reshape(-1)  # [B*F]
        pair = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts)
        local = torch.arange(pair.numel(), device=device) - (torch.cumsum(counts, 0) - counts)[pair]
        cols_per = n_cols.reshape(-1)[pair]
        col = c_lo.reshape(-1)[pair].long() + local % cols_per
        row = r_lo.reshape(-1)[pair].long() + local // cols_per
    corners = tri.reshape(-1, 3, 3)[pair][..., :2]  # [N,3,2] (differentiable)
    p = torch.stack([col.to(dtype) + 0.5, row.to(dtype) + 0.5], dim=-1)[:, None, :]  # [N,1,2]
    a, b = corners, corners.roll(-1, dims=1)  # edges 0->1, 1->2, 2->0
    ab, ap = b - a, p - a
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-30)).clamp(0.0, 1.0)
    dist2 = (ap - t[..., None] * ab).square().sum(-1).min(dim=1).values  # [N]
    cross = ab[..., 0] * ap[..., 1] - ab[..., 1] * ap[..., 0]  # [N,3], one sign for all three when inside
    inside = (cross >= 0).all(dim=1) | (cross <= 0).all(dim=1)
    logit = torch.where(inside, dist2, -dist2) / sigma
    batch = pair // faces.shape[0]
    # log(1 - sigmoid(x)) = -softplus(x): the product over faces as a stable sum of logs per pixel.
    log_empty = torch.zeros(n_batch * height * width, dtype=dtype, device=device).index_add(
        0, (batch * height + row) * width + col, -F_.softplus(logit)
    )
    return (-torch.expm1(log_empty)).view(n_batch, height, width)


class DifferentiableRasterizer(TorchRasterizer):
    """:class:`TorchRasterizer` whose outputs are differentiable w.r.t. vertices and vertex colours (torch shading).

    Same shading model, camera convention and coverage as the fast path (images agree to ~1e-3); about an order of
    magnitude slower, so use it for fitting, not for videos. Output tensors keep the vertices' dtype and device.
    ``RenderOutput.normals`` holds camera-space unit normals (0 where empty).

    Args:
        shading: ``"phong"``, ``"lambert"`` or ``"normals"`` (see :class:`TorchRasterizer`).
        light_direction: direction towards the light in camera space (x right, y up, z towards the viewer).
        ambient: ambient fraction of the albedo, in [0,1].
        specular: strength of the white Blinn-Phong highlight (``"phong"`` only).
        shininess: Blinn-Phong exponent (``"phong"`` only).
        background: RGB of empty pixels in [0,1].
        cull_backfaces: skip faces that are clockwise as seen by the camera.
        sigma: if set, the alpha channel is :func:`soft_silhouette` with this sharpness (squared pixels), which
            has gradients at the silhouette boundary; otherwise alpha is the hard mask.
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
        sigma: float | None = None,
    ) -> None:
        super().__init__(shading, light_direction, ambient, specular, shininess, background, cull_backfaces)
        if sigma is not None and not sigma > 0:
            raise ValueError(f"DifferentiableRasterizer: `sigma` must be positive or None, got {sigma}.")
        self.sigma = sigma

    def render(
        self, vertices: Tensor, faces: Tensor, camera: Camera, colors: Tensor | None = None
    ) -> RenderOutput:
        """Render ``[B,V,3]`` vertices with autograd; see :meth:`MeshRenderer.render`."""
        vertices, faces = _check_mesh(vertices, faces)
        n_batch = max(vertices.shape[0], camera.batch_size)
        if camera.batch_size not in (1, n_batch) or vertices.shape[0] not in (1, n_batch):
            raise ValueError(
                f"DifferentiableRasterizer.render: vertex batch {vertices.shape[0]} and camera batch "
                f"{camera.batch_size} must match or be 1."
            )
        dtype, device = vertices.dtype, vertices.device
        points = camera.world_to_camera(vertices)  # [B,V,3]: a batch of 1 (mesh or camera) broadcasts
        uvz = camera.camera_to_image(points)
        frags = rasterize_differentiable(
            uvz, faces, camera.image_size, not camera.orthographic, self.cull_backfaces
        )
        b, i, j = frags.pixels.unbind(-1)

        normals = F_.normalize(
            frags.interpolate_pixels(vertex_normals(points, frags.faces)), dim=-1, eps=1e-12
        )
        front = frags.front_facing[b, frags.pixel_faces]
        normals = torch.where(front[:, None], normals, -normals)  # two-sided lighting, as in the fast path
        if self.shading == "normals":
            rgb = normals * 0.5 + 0.5
        else:
            if colors is None:
                albedo = torch.tensor(DEFAULT_ALBEDO, dtype=dtype, device=device)
            else:
                colors = colors.to(device=device, dtype=dtype)
                if colors.shape[-2:] != (vertices.shape[1], 3) or colors.ndim not in (2, 3):
                    raise ValueError(
                        f"DifferentiableRasterizer.render: `colors` must be [V,3] or [B,V,3] with "
                        f"V={vertices.shape[1]}, got {tuple(colors.shape)}."
                    )
                albedo = frags.interpolate_pixels(colors)
            if self.shading == "lambert":
                rgb = lambert(normals, albedo, self.light_direction, self.ambient)
            else:
                rgb = blinn_phong(
                    normals,
                    self._view_dirs(camera, b, i, j, dtype, device),
                    albedo,
                    self.light_direction,
                    self.ambient,
                    self.specular,
                    self.shininess,
                )
        rgb = rgb.clamp(0.0, 1.0)
        if self.sigma is None:
            alpha = torch.ones_like(rgb[:, :1])
            image = frags.to_image(torch.cat([rgb, alpha], dim=-1), fill=(*self.background, 0.0))
        else:
            image = frags.to_image(rgb, fill=self.background)
            silhouette = soft_silhouette(uvz, faces, camera.image_size, self.sigma, self.cull_backfaces)
            image = torch.cat([image, silhouette[..., None]], dim=-1)
        return RenderOutput(
            image=image,
            depth=frags.depth,
            mask=frags.mask,
            face_ids=frags.face_ids,
            bary=frags.bary,
            normals=frags.to_image(normals),
        )

    @staticmethod
    def _view_dirs(
        camera: Camera, b: Tensor, i: Tensor, j: Tensor, dtype: torch.dtype, device: torch.device
    ) -> Tensor:
        """Unit vectors from the surface towards the camera along each pixel's ray ``[P,3]`` (as the kernel)."""
        if camera.orthographic:
            return torch.tensor([0.0, 0.0, 1.0], dtype=dtype, device=device).expand(b.shape[0], 3)
        cx, cy = camera.center
        focal = camera.focal_tensor(dtype).to(device).reshape(-1)
        focal = focal[b] if focal.numel() > 1 else focal.expand(b.shape[0])
        ray = torch.stack(
            [-(j.to(dtype) + 0.5 - cx) / focal, (i.to(dtype) + 0.5 - cy) / focal, torch.ones_like(focal)], -1
        )
        return F_.normalize(ray, dim=-1)
