"""The motion a token model works in: vertex offsets from the template, or a face model's parameters."""

from __future__ import annotations

from torch import Tensor

from motion.face.base import FaceModel
from talk.data.batch import Batch
from talk.pipeline.model import motion_offsets


class MotionSpace:
    """Mixin of the token models: ``face_model`` None means vertex offsets ``[B, T, V*3]`` (metres); a face model
    means its parameters: FLAME motion ``[B, T, n_expression + 3]`` (expression coefficients, then jaw
    axis-angle), ARKit weights ``[B, T, 52]`` (:class:`~motion.face.blendshapes.model.ArkitRig`) or BFM expression
    coefficients ``[B, T, 64]`` (:class:`~motion.face.bfm.BFM`), turned into vertex offsets through the face model
    on each sequence's template."""

    face_model: FaceModel | None

    @staticmethod
    def offsets(batch: Batch) -> Tensor:
        """Vertex offsets from the template, flattened: ``[B, T, V*3]`` in metres."""
        b, t = batch.motion.shape[:2]
        return (batch.motion - batch.template[:, None]).reshape(b, t, -1)

    def motion(self, batch: Batch) -> Tensor:
        """The batch's motion ``[B, T, D]`` in this space."""
        if self.face_model is not None:
            return batch.face_motion(self.face_model.motion_kind, self.face_model.num_motion_params)
        return self.offsets(batch)

    def to_offsets(self, motion: Tensor, template: Tensor) -> Tensor:
        """Motion ``[B, T, D]`` in this space -> vertex offsets ``[B, T, V*3]`` from ``template`` ``[B, V, 3]``."""
        return motion_offsets(self.face_model, motion, template)
