"""The result type every audio encoder returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class AudioFeatures:
    """A padded batch of audio feature sequences.

    Attributes:
        x: Features, shape [B, Ta, D]. Frames where ``mask`` is False are padding; encoders in this package set
            them to zero, but consumers must rely on ``mask``, not on the values.
        mask: Validity mask, shape [B, Ta], dtype bool, True = valid frame. Valid frames are always a prefix of
            each row (sequences are right-padded).
        frame_rate: Frames per second of ``x`` (50.0 for the default encoders at 16 kHz).
    """

    x: Tensor
    mask: Tensor
    frame_rate: float

    def __post_init__(self) -> None:
        # Checked here so that a shape bug surfaces where the features are made, not deep inside a model.
        if self.x.dim() != 3:
            raise ValueError(f"AudioFeatures.x must have shape [B, Ta, D], got {tuple(self.x.shape)}.")
        if self.mask.dtype != torch.bool:
            raise ValueError(f"AudioFeatures.mask must be a bool tensor, got {self.mask.dtype}.")
        if tuple(self.mask.shape) != tuple(self.x.shape[:2]):
            raise ValueError(
                f"AudioFeatures.mask has shape {tuple(self.mask.shape)} but x has [B, Ta] = {tuple(self.x.shape[:2])}."
            )
        if not self.frame_rate > 0:
            raise ValueError(f"AudioFeatures.frame_rate must be positive, got {self.frame_rate}.")

    @property
    def lengths(self) -> Tensor:
        """Number of valid frames per sequence, shape [B], dtype long."""
        return self.mask.sum(dim=1)

    @property
    def dim(self) -> int:
        """Feature size D."""
        return int(self.x.shape[-1])
