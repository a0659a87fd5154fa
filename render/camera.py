"""Pinhole / orthographic camera shared by every mesh renderer backend.

Conventions (one for all backends):

* **World space**: metres, y up; a face mesh looks towards +z.
* **Camera space** (OpenGL style): x right, y up, the camera looks down -z, so points in front of the camera
  have negative z. ``depth = -z_cam`` is positive in front of the camera.
* **World -> camera**: ``X_cam = X_world @ R^T + T`` (row vectors), ``R`` ``[B,3,3]``, ``T`` ``[B,3]``.
  The camera centre in world space is ``-T @ R``.
* **Image space**: ``u`` right, ``v`` down, in pixels. Pixel ``(row i, column j)`` covers
  ``[j, j+1) x [i, i+1)`` and is *sampled at its centre* ``(u, v) = (j + 0.5, i + 0.5)``.
  The principal point defaults to the image centre ``(W/2, H/2)``.
* **Perspective**: ``u = cx + f * x_cam / depth``, ``v = cy - f * y_cam / depth`` with ``f`` in pixels.
* **Orthographic**: ``u = cx + f * x_cam``, ``v = cy - f * y_cam`` with ``f`` in pixels per metre.

To use the same camera with pytorch3d (x left, y up, z forward, ``X_cam = X @ R + T``), rotate the camera
frame by 180 degrees about y: ``R_p3d = (diag(-1, 1, -1) @ R).T`` and ``T_p3d = T * (-1, 1, -1)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = ["Camera", "fit_camera"]


def _as_batched(value: Sequence[float] | Tensor, name: str) -> Tensor:
    """Turn a 3-vector or a ``[B,3]`` batch of them into a float64 ``[B,3]`` tensor."""
    t = torch.as_tensor(value, dtype=torch.float64)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[-1] != 3:
        raise ValueError(
            f"Camera.look_at: `{name}` must be a 3-vector or a [B,3] tensor, got shape {tuple(t.shape)}."
        )
    return t


def _look_rotation(forward_to_eye: Tensor, up: Tensor) -> Tensor:
    """World->camera rotation whose camera z axis points from the target to the eye.

    Args:
        forward_to_eye: ``[B,3]`` vector from the target towards the eye (camera +z, since it looks down -z).
        up: ``[B,3]`` approximate world up direction.

    Returns:
        ``[B,3,3]`` rotation whose rows are the camera x, y, z axes in world coordinates.
    """
    z = forward_to_eye / forward_to_eye.norm(dim=-1, keepdim=True)
    x = torch.linalg.cross(up.expand_as(z), z, dim=-1)
    norm = x.norm(dim=-1, keepdim=True)
    if bool((norm < 1e-9).any()):
        raise ValueError("Camera.look_at: `up` is parallel to the viewing direction; pass a different `up`.")
    x = x / norm
    y = torch.linalg.cross(z, x, dim=-1)
    return torch.stack([x, y, z], dim=1)


@dataclass(frozen=True, eq=False)
class Camera:
    """A batch of pinhole or orthographic cameras (conventions in the module docstring).

    Args:
        R: ``[B,3,3]`` world->camera rotation.
        T: ``[B,3]`` world->camera translation (``X_cam = X_world @ R^T + T``).
        focal: focal length in pixels (perspective) or pixels per metre (orthographic); a float or a ``[B]``
            tensor.
        image_size: ``(H, W)`` in pixels.
        principal_point: ``(cx, cy)`` in pixels; ``None`` means the image centre ``(W/2, H/2)``.
        orthographic: project orthographically instead of with a pinhole.
    """

    R: Tensor
    T: Tensor
    focal: float | Tensor
    image_size: tuple[int, int]
    principal_point: tuple[float, float] | None = None
    orthographic: bool = False

    def __post_init__(self) -> None:
        if self.R.ndim != 3 or self.R.shape[1:] != (3, 3):
            raise ValueError(f"Camera: `R` must have shape [B,3,3], got {tuple(self.R.shape)}.")
        if self.T.shape != (self.R.shape[0], 3):
            raise ValueError(
                f"Camera: `T` must have shape [B,3] = [{self.R.shape[0]},3], got {tuple(self.T.shape)}."
            )
        if len(self.image_size) != 2 or min(int(s) for s in self.image_size) <= 0:
            raise ValueError(
                f"Camera: `image_size` must be (H, W) with positive sizes, got {self.image_size}."
            )
        focal = torch.as_tensor(self.focal, dtype=torch.float64)
        if focal.numel() not in (1, self.R.shape[0]) or not bool((focal > 0).all()):
            raise ValueError("Camera: `focal` must be positive, a float or one value per camera.")

    @property
    def batch_size(self) -> int:
        """Number of cameras B."""
        return int(self.R.shape[0])

    @property
    def center(self) -> tuple[float, float]:
        """Principal point ``(cx, cy)`` in pixels."""
        if self.principal_point is not None:
            return float(self.principal_point[0]), float(self.principal_point[1])
        height, width = self.image_size
        return width / 2.0, height / 2.0

    def focal_tensor(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """Focal length as a ``[B or 1, 1]`` tensor that broadcasts against ``[B,V]``."""
        return torch.as_tensor(self.focal, dtype=dtype).reshape(-1, 1)

    def world_to_camera(self, points: Tensor) -> Tensor:
        """Transform world points ``[B,V,3]`` (or ``[V,3]``) into camera space ``[B,V,3]``.

        A camera batch of 1 broadcasts over any B.
        """
        if points.ndim == 2:
            points = points[None]
        R = self.R.to(points.dtype)
        T = self.T.to(points.dtype)
        # Written as three broadcast multiply-adds rather than a batched matmul: for a few thousand points
        # the BLAS call's thread start-up dominates on small CPUs; the result is the same.
        return (
            points[..., 0:1] * R[:, None, :, 0]
            + points[..., 1:2] * R[:, None, :, 1]
            + points[..., 2:3] * R[:, None, :, 2]
            + T[:, None, :]
        )

    def camera_to_image(self, points_cam: Tensor) -> Tensor:
        """Project camera-space points ``[B,V,3]`` to ``[B,V,3]`` = ``(u, v, depth)`` in pixels / metres."""
        cx, cy = self.center
        f = self.focal_tensor(points_cam.dtype)
        depth = -points_cam[..., 2]
        if self.orthographic:
            u = cx + f * points_cam[..., 0]
            v = cy - f * points_cam[..., 1]
        else:
            # Points behind the camera get a finite but meaningless position; rasterizers drop them by depth.
            safe = torch.where(depth.abs() > 1e-12, depth, torch.full_like(depth, 1e-12))
            u = cx + f * points_cam[..., 0] / safe
            v = cy - f * points_cam[..., 1] / safe
        return torch.stack([u, v, depth], dim=-1)

    def project(self, points: Tensor) -> Tensor:
        """Project world points ``[B,V,3]`` to ``[B,V,3]`` = ``(u, v, depth)``; see the module conventions."""
        return self.camera_to_image(self.world_to_camera(points))

    @staticmethod
    def look_at(
        eye: Sequence[float] | Tensor,
        target: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
        up: Sequence[float] | Tensor = (0.0, 1.0, 0.0),
        fov_deg: float = 20.0,
        image_size: tuple[int, int] = (512, 512),
        orthographic: bool = False,
        view_height: float | None = None,
    ) -> Camera:
        """Perspective or orthographic camera(s) at ``eye`` looking at ``target``.

        Args:
            eye: camera centre, a 3-vector or ``[B,3]``, metres.
            target: point the camera looks at, a 3-vector or ``[B,3]``.
            up: approximate world up direction.
            fov_deg: vertical field of view in degrees (perspective only).
            image_size: ``(H, W)`` in pixels.
            orthographic: project orthographically; ``view_height`` then sets the scale.
            view_height: height in metres that the orthographic image spans (``focal = H / view_height``);
                required with ``orthographic=True``, ignored otherwise.

        Returns:
            A :class:`Camera` with ``B = max(len(eye), len(target))`` cameras.
        """
        if orthographic:
            if view_height is None or not view_height > 0:
                raise ValueError(
                    f"Camera.look_at: an orthographic camera needs a positive `view_height` in metres, "
                    f"got {view_height}."
                )
        elif not 0.0 < fov_deg < 180.0:
            raise ValueError(f"Camera.look_at: `fov_deg` must be in (0, 180), got {fov_deg}.")
        eye_t, target_t, up_t = _as_batched(eye, "eye"), _as_batched(target, "target"), _as_batched(up, "up")
        eye_t, target_t = torch.broadcast_tensors(eye_t, target_t)
        R = _look_rotation(eye_t - target_t, up_t)
        T = -(R @ eye_t[..., None])[..., 0]
        if orthographic:
            focal = image_size[0] / float(view_height)
        else:
            focal = image_size[0] / 2.0 / math.tan(math.radians(fov_deg) / 2.0)
        return Camera(
            R=R.float(),
            T=T.float(),
            focal=focal,
            image_size=(int(image_size[0]), int(image_size[1])),
            orthographic=orthographic,
        )


_VIEW_YAW_DEG = {"front": 0.0, "three_quarter": 35.0}


def fit_camera(
    vertices: Tensor,
    image_size: tuple[int, int] = (512, 512),
    fov_deg: float = 20.0,
    view: Literal["front", "three_quarter"] = "front",
    margin: float = 1.15,
    orthographic: bool = False,
) -> Camera:
    """Frame a mesh (metres, face towards +z, y up) so that it fills the image.

    The camera is fitted to the union of all frames, so compute it once per sequence to keep the camera still.
    ``"front"`` looks along -z at the face; ``"three_quarter"`` is rotated 35 degrees about y towards +x.

    Args:
        vertices: ``[V,3]``, ``[B,V,3]`` or ``[T,V,3]`` vertex positions.
        image_size: ``(H, W)`` in pixels.
        fov_deg: vertical field of view in degrees (perspective only).
        view: ``"front"`` or ``"three_quarter"``.
        margin: how much larger than the mesh's projected extent the image is (1.0 = touches the border).
        orthographic: return an orthographic camera instead of a pinhole one.

    Returns:
        A :class:`Camera` with batch size 1 (it broadcasts over any batch of frames).
    """
    if view not in _VIEW_YAW_DEG:
        raise ValueError(f"fit_camera: `view` must be one of {sorted(_VIEW_YAW_DEG)}, got {view!r}.")
    if margin <= 0:
        raise ValueError(f"fit_camera: `margin` must be positive, got {margin}.")
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"fit_camera: `fov_deg` must be in (0, 180), got {fov_deg}.")
    if vertices.ndim not in (2, 3) or vertices.shape[-1] != 3 or vertices.numel() == 0:
        raise ValueError(
            f"fit_camera: `vertices` must be [V,3] or [B,V,3], got shape {tuple(vertices.shape)}."
        )
    points = vertices.detach().reshape(-1, 3).to(torch.float64).cpu()
    if not bool(torch.isfinite(points).all()):
        raise ValueError("fit_camera: `vertices` contain NaN or infinite values.")

    yaw = math.radians(_VIEW_YAW_DEG[view])
    to_eye = torch.tensor([[math.sin(yaw), 0.0, math.cos(yaw)]], dtype=torch.float64)
    R = _look_rotation(to_eye, torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64))[0]
    q = points @ R.T  # camera axes, origin still at the world origin
    lo, hi = q.min(dim=0).values, q.max(dim=0).values
    centre = (lo + hi) / 2.0
    rel = q - centre
    height, width = int(image_size[0]), int(image_size[1])
    half_x = rel[:, 0].abs() * margin
    half_y = rel[:, 1].abs() * margin
    if orthographic:
        extent_x = max(float(half_x.max()), 1e-9)
        extent_y = max(float(half_y.max()), 1e-9)
        focal: float = min(width / 2.0 / extent_x, height / 2.0 / extent_y)
        # Any distance in front works for an orthographic view; keep depths positive and O(size).
        distance = float(rel[:, 2].max()) + max(extent_x, extent_y, float(hi[2] - lo[2]))
    else:
        tan_y = math.tan(math.radians(fov_deg) / 2.0)
        tan_x = tan_y * width / height
        # Each point needs |x| * margin <= tan * depth with depth = distance - z_rel; take the tightest point.
        distance = float((rel[:, 2] + torch.maximum(half_x / tan_x, half_y / tan_y)).max())
        distance = max(distance, float(rel[:, 2].max()) + 1e-3)
        focal = height / 2.0 / tan_y
    cam_centre = centre + torch.tensor([0.0, 0.0, distance], dtype=torch.float64)
    return Camera(
        R=R[None].float(),
        T=(-cam_centre)[None].float(),
        focal=focal,
        image_size=(height, width),
        orthographic=orthographic,
    )
