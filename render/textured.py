"""Textured-look rendering: per-vertex albedo under a (per-frame) directional light, composited onto a backdrop.

    from render import Camera
    from render.textured import render_textured, textured_background
    frames = render_textured(vertices, faces, camera, albedo, textured_background((256, 256), seed=0),
                             light_direction=[[0.3, 0.4, 1.0]] * len(vertices))    # [B,H,W,3] uint8

"Textured" means vertex colours, not UV textures: the mesh is shaded by :class:`~render.rasterizer.TorchRasterizer`
(Blinn-Phong, lit from both sides) with the albedo as its colours, and the rasterizer's binary mask selects between
the shaded head and the background image (no anti-aliasing). Synthetic talking videos (``talk.synth.video``) and
portraits use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from render.camera import Camera
from render.rasterizer import TorchRasterizer

__all__ = ["render_textured", "textured_background"]


def _light_batch(light_direction: Sequence[float] | np.ndarray | Tensor, n_batch: int) -> np.ndarray:
    """``[3]`` or ``[B,3]`` -> float64 ``[B,3]`` unit vectors."""
    light = np.asarray(
        light_direction.detach().cpu().numpy() if isinstance(light_direction, Tensor) else light_direction,
        np.float64,
    )
    if light.shape == (3,):
        light = np.broadcast_to(light, (n_batch, 3))
    if light.shape != (n_batch, 3):
        raise ValueError(
            f"render_textured: `light_direction` must be [3] or [B,3] with B={n_batch}, got {light.shape}."
        )
    norm = np.linalg.norm(light, axis=1, keepdims=True)
    if not (np.isfinite(light).all() and (norm > 1e-12).all()):
        raise ValueError("render_textured: `light_direction` must be finite and non-zero.")
    return light / norm


def _background_batch(
    background: Sequence[float] | np.ndarray | Tensor, n_batch: int, size: tuple[int, int]
) -> np.ndarray:
    """An RGB triple or an ``[H,W,3]`` / ``[B,H,W,3]`` image (uint8 or float in [0,1]) -> float32 ``[B|1,H,W,3]``."""
    bg = background.detach().cpu().numpy() if isinstance(background, Tensor) else np.asarray(background)
    scale = 1.0 / 255.0 if bg.dtype == np.uint8 else 1.0
    bg = bg.astype(np.float32) * np.float32(scale)
    if bg.shape == (3,):
        return np.broadcast_to(bg, (1, *size, 3))
    if bg.ndim == 3:
        bg = bg[None]
    if bg.ndim != 4 or bg.shape[1:] != (*size, 3) or bg.shape[0] not in (1, n_batch):
        raise ValueError(
            f"render_textured: `background` must be an RGB triple, [H,W,3] or [B,H,W,3] with (H, W)={size}, "
            f"B={n_batch}, got shape {bg.shape}."
        )
    return bg


def render_textured(
    vertices: Tensor,
    faces: Tensor,
    camera: Camera,
    albedo: Tensor | np.ndarray,
    background: Sequence[float] | np.ndarray | Tensor = (0.5, 0.5, 0.5),
    light_direction: Sequence[float] | np.ndarray | Tensor = (0.3, 0.4, 1.0),
    ambient: float = 0.4,
    specular: float = 0.08,
    shininess: float = 16.0,
) -> np.ndarray:
    """Render meshes coloured by a per-vertex albedo under a directional light, over a background image.

    Args:
        vertices: ``[B,V,3]`` world-space positions (metres).
        faces: ``[F,3]`` long vertex indices.
        camera: a camera batch of 1 or B (:mod:`render.camera` conventions).
        albedo: ``[V,3]`` or ``[B,V,3]`` base colour in [0,1].
        background: an RGB triple in [0,1], or an image ``[H,W,3]`` / ``[B,H,W,3]``, uint8 or float in [0,1],
            of the camera's image size, shown where the mesh does not cover the pixel.
        light_direction: direction towards the light in camera space (x right, y up, z towards the viewer),
            ``[3]`` for all frames or ``[B,3]`` per frame.
        ambient: ambient fraction of the albedo, in [0,1].
        specular: strength of the white Blinn-Phong highlight.
        shininess: Blinn-Phong exponent.

    Returns:
        ``[B,H,W,3]`` uint8 frames.
    """
    if not isinstance(vertices, Tensor) or vertices.ndim != 3 or vertices.shape[-1] != 3:
        shape = tuple(vertices.shape) if hasattr(vertices, "shape") else type(vertices).__name__
        raise ValueError(f"render_textured: `vertices` must be a [B,V,3] tensor, got {shape}.")
    n_batch, n_verts = int(vertices.shape[0]), int(vertices.shape[1])
    colors = torch.as_tensor(np.asarray(albedo) if not isinstance(albedo, Tensor) else albedo)
    colors = colors.detach().to("cpu", torch.float32)
    if colors.ndim == 2:
        colors = colors[None]
    if colors.ndim != 3 or colors.shape[1:] != (n_verts, 3) or colors.shape[0] not in (1, n_batch):
        raise ValueError(
            f"render_textured: `albedo` must be [V,3] or [B,V,3] with V={n_verts}, B={n_batch}, got "
            f"{tuple(colors.shape)}."
        )
    if camera.batch_size not in (1, n_batch):
        raise ValueError(f"render_textured: camera batch {camera.batch_size} must be 1 or B={n_batch}.")
    size = (int(camera.image_size[0]), int(camera.image_size[1]))
    lights = _light_batch(light_direction, n_batch)
    bg = _background_batch(background, n_batch, size)
    colors = colors.clamp(0.0, 1.0)

    def renderer(light: np.ndarray) -> TorchRasterizer:
        return TorchRasterizer(
            shading="phong",
            light_direction=tuple(light),
            ambient=ambient,
            specular=specular,
            shininess=shininess,
        )

    if (lights == lights[:1]).all():  # one light: one batched call
        outputs = [renderer(lights[0]).render(vertices, faces, camera, colors=colors)]
    else:  # the rasterizer's light is fixed per instance, so a per-frame light renders frame by frame
        outputs = []
        for b in range(n_batch):
            cam = camera if camera.batch_size == 1 else _camera_at(camera, b)
            col = colors if colors.shape[0] == 1 else colors[b : b + 1]
            outputs.append(renderer(lights[b]).render(vertices[b : b + 1], faces, cam, colors=col))
    rgb = np.concatenate([o.image[..., :3].numpy() for o in outputs])
    mask = np.concatenate([o.mask.numpy() for o in outputs])[..., None]
    out = np.where(mask, rgb, bg)
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _camera_at(camera: Camera, b: int) -> Camera:
    """Camera ``b`` of a batch, as a batch of 1."""
    focal = torch.as_tensor(camera.focal).reshape(-1)
    return Camera(
        R=camera.R[b : b + 1],
        T=camera.T[b : b + 1],
        focal=float(focal[b if focal.numel() > 1 else 0]),
        image_size=camera.image_size,
        principal_point=camera.principal_point,
        orthographic=camera.orthographic,
    )


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: int) -> np.ndarray:
    """``[H,W]`` value noise in [-1,1]: a random ``cells`` x ``cells`` grid, bicubically upsampled."""
    height, width = size
    grid = torch.as_tensor(rng.uniform(-1.0, 1.0, (1, 1, cells + 3, cells + 3)), dtype=torch.float32)
    up = torch.nn.functional.interpolate(
        grid, size=(height + 2, width + 2), mode="bicubic", align_corners=True
    )
    return up[0, 0, 1:-1, 1:-1].numpy()


def textured_background(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A plausible non-face backdrop: a smooth colour gradient, soft low-frequency blobs and fine noise.

    Colours are muted (a wall, a room out of focus); the same ``(size, seed)`` always gives the same image.

    Args:
        size: ``(H, W)`` in pixels.
        seed: random seed.

    Returns:
        ``[H,W,3]`` uint8 image.
    """
    if len(size) != 2 or min(int(s) for s in size) <= 0:
        raise ValueError(f"textured_background: `size` must be (H, W) with positive sizes, got {size}.")
    height, width = int(size[0]), int(size[1])
    rng = np.random.default_rng(int(seed))
    # gradient between two muted colours along a random direction
    c0, c1 = rng.uniform(0.15, 0.75, 3), rng.uniform(0.15, 0.75, 3)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    yy, xx = np.meshgrid(np.linspace(-0.5, 0.5, height), np.linspace(-0.5, 0.5, width), indexing="ij")
    t = np.clip(0.5 + np.cos(angle) * xx + np.sin(angle) * yy, 0.0, 1.0)[..., None]
    image = (1.0 - t) * c0 + t * c1
    # soft blobs (out-of-focus objects), each a Gaussian of its own colour
    for _ in range(int(rng.integers(3, 7))):
        cy, cx = rng.uniform(-0.1, 1.1, 2)
        sigma = rng.uniform(0.08, 0.3)
        weight = rng.uniform(0.3, 0.8) * np.exp(
            -((yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2) / (2.0 * sigma**2)
        )
        image = image + weight[..., None] * (rng.uniform(0.1, 0.85, 3) - image)
    # mid-frequency brightness variation, then fine per-pixel (sensor-like) noise
    image = image * (1.0 + 0.08 * _smooth_noise(rng, (height, width), 6))[..., None]
    image = image + rng.normal(0.0, 0.015, image.shape)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
