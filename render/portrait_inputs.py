"""What a portrait generator reads for one frame: the reference warped by the mesh motion, and the target mesh's
normals, depth, coverage and mouth-interior mask, all computed from meshes and a camera.

One function serves training (:class:`talk.synth.portrait_dataset.PortraitClips`) and inference
(:mod:`talk.pipeline.portrait`), so the generator sees at test time exactly what it was trained on.
"""

from __future__ import annotations

import torch
from torch import Tensor

from render.camera import Camera
from render.rasterizer import TorchRasterizer
from render.warp import warp_portrait

__all__ = ["DEPTH_SCALE", "portrait_inputs"]

DEPTH_SCALE = 0.1  # metres: depth conditioning is (depth - median depth of the head) / DEPTH_SCALE


@torch.no_grad()
def portrait_inputs(
    reference: Tensor,
    source: Tensor,
    animated: Tensor,
    faces: Tensor,
    mouth_faces: Tensor,
    camera: Camera,
    falloff: float = 0.125,
    renderer: TorchRasterizer | None = None,
) -> dict[str, Tensor]:
    """The generator's inputs for one frame (images channel-first, float32).

    Args:
        reference: ``[3, H, W]`` the portrait in [0, 1].
        source: ``[V, 3]`` the mesh fitted to the portrait (camera space, metres).
        animated: ``[V, 3]`` the mesh of the frame to produce.
        faces: ``[F, 3]`` triangles (head and mouth interior).
        mouth_faces: ``[M]`` indices into ``faces`` of the mouth interior (cavity, teeth, tongue).
        camera: The portrait's camera at the image's size.
        falloff: Reach of the motion outside the mesh, a fraction of the image side (``render.warp.mesh_flow``).
        renderer: A ``TorchRasterizer(shading="normals")`` to reuse (default: a new one).

    Returns:
        ``warped`` ``[3, H, W]``; ``flow`` ``[2, H, W]`` backward displacement in ``grid_sample`` units;
        ``normals`` ``[3, H, W]`` camera-space unit normals of ``animated`` (0 off the mesh); ``depth`` ``[1, H, W]``
        its depth minus the head's median depth over :data:`DEPTH_SCALE` (0 off the mesh); ``mask`` ``[1, H, W]``
        mesh coverage; ``mouth_mask`` ``[1, H, W]`` pixels showing the mouth interior.
    """
    renderer = renderer or TorchRasterizer(shading="normals")
    size = camera.image_size
    warped = warp_portrait(reference[None], source, animated, faces, camera, size, falloff, mouth_faces)
    render = renderer.render(animated[None], faces, camera)
    flow = warped.flow
    mask = flow.mask[0]
    normals = (render.image[0, :, :, :3] * 2.0 - 1.0) * render.mask[0, :, :, None]
    depth = torch.zeros(size, dtype=torch.float32)
    if bool(mask.any()):
        on = flow.depth[0][mask].float()
        depth[mask] = (on - on.median()) / DEPTH_SCALE
    scale = torch.tensor([2.0 / size[1], 2.0 / size[0]], dtype=torch.float32).view(2, 1, 1)
    return {
        "warped": warped.image[0].float(),
        "flow": flow.displacement[0].float() * scale,
        "normals": normals.permute(2, 0, 1).float().contiguous(),
        "depth": depth[None],
        "mask": mask[None].float(),
        "mouth_mask": flow.mouth_mask[0][None].float(),
    }
