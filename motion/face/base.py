"""Common interface of parametric face models: parameters -> per-frame mesh vertices."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["FaceModelOutput", "FaceModel"]


@dataclass(frozen=True)
class FaceModelOutput:
    """Result of a face model forward pass.

    Attributes:
        vertices: posed mesh vertices ``[B,T,V,3]`` in metres.
        landmarks: ``[B,T,L,3]`` when a landmark embedding is loaded, else None.
        joints: posed joint locations ``[B,T,J,3]`` (None for models without a skeleton).
    """

    vertices: Tensor
    landmarks: Tensor | None = None
    joints: Tensor | None = None


class FaceModel(nn.Module):
    """Abstract base of face models (FLAME, linear 3DMMs, blendshape rigs).

    Subclasses register ``faces`` (LongTensor ``[F,3]``) as a buffer and implement ``forward``.

    A model that token models can work in (its parameters as the motion) also gives ``motion_kind`` (which
    parameters a dataset must hold: ``"flame"`` expression + jaw, ``"arkit"`` blendshape weights, ``"bfm"``
    expression coefficients), ``num_motion_params`` (D), ``motion_offsets(motion [B,T,D], template [B,V,3]) ->
    [B,T,V,3]`` and, where its parameters are bounded, :meth:`constrain`.
    """

    faces: Tensor
    motion_kind: str = ""

    def constrain(self, motion: Tensor) -> Tensor:
        """Motion ``[B, T, D]`` brought into the parameters' valid range (unbounded models: unchanged)."""
        return motion

    @property
    def num_vertices(self) -> int:
        """Number of mesh vertices V."""
        raise NotImplementedError

    @property
    def num_faces(self) -> int:
        """Number of triangles F."""
        return int(self.faces.shape[0])

    def forward(self, *args: object, **kwargs: object) -> FaceModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _as_long_faces(faces: object) -> Tensor:
        return torch.as_tensor(faces).long().reshape(-1, 3)
