"""Rendering BFM 3DMM coefficients as Deep3DFaceRecon does: SH-lit vertex colours through the project's rasterizer.

It joins :mod:`motion.face.bfm` (shape, pose, lighting) and :mod:`render` (rasterization), so it lives in ``talk``:

    from motion.face.bfm import BFM
    from talk.bfm_render import render_bfm

    image, mask = render_bfm(BFM("BFM_model_front.mat"), coeff)   # coeff [B, 257] -> [B, 224, 224, 3], [B, 224, 224]
"""

from __future__ import annotations

import torch
from torch import Tensor

from motion.face.bfm import BFM, CAMERA_DISTANCE, BFMCoeffs
from render.camera import Camera
from render.differentiable import rasterize_differentiable

__all__ = ["bfm_camera", "render_bfm"]


def bfm_camera(
    image_size: int = 224,
    focal: float = 1015.0,
    center: float = 112.0,
    camera_distance: float = CAMERA_DISTANCE,
) -> Camera:
    """Deep3DFaceRecon's camera as a :class:`render.camera.Camera` for posed BFM points in file units (it projects
    as :meth:`motion.face.bfm.BFM.project` does)."""
    return Camera(
        R=torch.eye(3)[None],
        T=torch.tensor([[0.0, 0.0, -camera_distance]]),
        focal=focal,
        image_size=(image_size, image_size),
        principal_point=(center, center),
    )


def render_bfm(
    bfm: BFM,
    coeff: Tensor | BFMCoeffs,
    image_size: int = 224,
    focal: float = 1015.0,
    center: float = 112.0,
    background: float = 0.0,
    camera_distance: float = CAMERA_DISTANCE,
) -> tuple[Tensor, Tensor]:
    """Deep3DFaceRecon's forward: shape, pose, SH-lit albedo (:meth:`~motion.face.bfm.BFM.lit_mesh`), rasterized
    with perspective-correct colour interpolation (:func:`render.differentiable.rasterize_differentiable`).

    Differentiable w.r.t. every coefficient inside the silhouette (coverage has no gradient).

    Args:
        bfm: The model.
        coeff: ``[B, 257]`` coefficients or :class:`~motion.face.bfm.BFMCoeffs` of ``[B, ...]`` parts.
        image_size: Square image side S in pixels.
        focal: Focal length in pixels (Deep3DFaceRecon: 1015 at 224).
        center: Principal point in pixels, both axes.
        background: Value of uncovered pixels.
        camera_distance: Camera position on the +z axis, file units.

    Returns:
        ``(image [B, S, S, 3]`` lit colours, about [0, 1], ``mask [B, S, S]`` bool coverage``)``.
    """
    uvz, colors = bfm.lit_mesh(coeff, focal, center, camera_distance)
    frags = rasterize_differentiable(uvz, bfm.faces, (image_size, image_size), perspective=True)
    return frags.to_image(frags.interpolate_pixels(colors), fill=background), frags.mask
