"""``ArkitRig``: an avatar's ARKit-52 rig as a face model that token models work in (weights as the motion).

The rig is read from any file :func:`~motion.face.blendshapes.load.load_rig` reads (GLB/glTF morph targets, a
folder of OBJs, a rig ``.npz``) and put in Apple's ARKit-52 order; ARKit targets the file lacks move nothing.
Motion is ``[B, T, 52]`` weights, and vertex offsets are ``weights @ deltas``: linear, so they do not depend on
the template they are added to (a dataset's subjects may have their own neutral meshes; the deltas are the rig's).
Weights live in [0, 1]: :meth:`ArkitRig.constrain` clips to that range, and :class:`talk.pipeline.AudioToMotion`
applies it to every generated sequence (training losses see the unclipped values, so their gradients stay).

In checkpoints the rig is stored by its buffers: :meth:`ArkitRig.contained_init_args` replaces the file with its
sizes (``layout``), so a checkpoint rebuilds the rig without the avatar file.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from motion.face.blendshapes.arkit import ARKIT_NAMES
from motion.face.blendshapes.load import load_rig
from motion.face.blendshapes.rig import BlendshapeRig

__all__ = ["ArkitRig"]


class ArkitRig(BlendshapeRig):
    """The 52 ARKit targets of a rig file, as a parametric face model.

    Args:
        path: The rig (``.glb`` / ``.gltf``, a folder of OBJ targets, or a rig ``.npz``); its targets are matched to
            the ARKit names in any spelling (``eyeBlink_L``, ``EyeBlinkLeft``, ...).
        mesh: glTF only: the mesh name(s) to read (see :func:`~motion.face.blendshapes.gltf.load_gltf`).
        layout: Instead of ``path``: ``{"num_vertices", "num_faces"}`` (what :meth:`contained_init_args` writes);
            the buffers must then come from a state dict.

    Attributes:
        missing: ARKit names the file has no target for (zero deltas).
    """

    file_arguments = ("path",)  # what contained_init_args() replaces
    motion_kind = "arkit"
    bounds = (0.0, 1.0)

    def __init__(
        self, path: str | None = None, mesh: str | Sequence[str] | None = None, layout: dict | None = None
    ) -> None:
        if (path is None) == (layout is None):
            raise ValueError("ArkitRig: pass either path (the rig file) or layout (from a checkpoint).")
        if layout is not None:
            try:
                n_v, n_f = int(layout["num_vertices"]), int(layout["num_faces"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(
                    f"ArkitRig layout {layout!r} must give num_vertices and num_faces."
                ) from None
            neutral, deltas = torch.zeros(n_v, 3), torch.zeros(len(ARKIT_NAMES), n_v, 3)
            faces = torch.zeros(n_f, 3, dtype=torch.long) if n_f else None
            missing: tuple[str, ...] = ()
        else:
            reordered = load_rig(path, mesh=mesh).to_arkit()
            neutral, deltas, faces = reordered.rig.neutral, reordered.rig.deltas, reordered.rig.faces
            missing = reordered.missing
        super().__init__(neutral, deltas, ARKIT_NAMES, faces)
        self.missing = missing

    def contained_init_args(self) -> dict:
        """Init args that rebuild this rig's structure without its file (its state dict holds the rest)."""
        layout = {"num_vertices": self.num_vertices, "num_faces": self.num_faces}
        return {"path": None, "mesh": None, "layout": layout}

    @property
    def num_motion_params(self) -> int:
        """Width of one frame of motion: the 52 weights."""
        return self.num_targets

    def motion_offsets(self, motion: Tensor, template: Tensor) -> Tensor:
        """Vertex offsets ``[B, T, V, 3]`` of weights ``[B, T, 52]`` (``template`` ``[B, V, 3]`` only fixes the
        batch; the offsets are the rig's and the same for every template)."""
        if motion.dim() != 3 or motion.shape[-1] != self.num_targets:
            raise ValueError(
                f"ARKit motion must be [B, T, {self.num_targets}] weights, got {list(motion.shape)}."
            )
        b, t, k = motion.shape
        flat = self.deltas.reshape(k, -1)
        return (motion.to(flat.dtype).reshape(b * t, k) @ flat).reshape(b, t, self.num_vertices, 3)

    def constrain(self, motion: Tensor) -> Tensor:
        """Weights clipped to [0, 1], the range ARKit rigs are driven in."""
        return motion.clamp(*self.bounds)
