"""What a trained model needs from its dataset at inference: subjects, templates, mesh faces, regions, rates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from talk.errors import CheckpointError


def _tensor(value: Any, dtype: torch.dtype) -> Tensor:
    return torch.as_tensor(np.asarray(value), dtype=dtype)


@dataclass(frozen=True)
class Assets:
    """The dataset facts a model carries in its checkpoints, so that inference needs nothing but the checkpoint.

    Args:
        train_subjects: Training subjects, in style-index order.
        templates: Subject -> neutral mesh ``[V, 3]`` (metres).
        faces: Mesh triangles ``[F, 3]``, or None for data without a mesh topology.
        regions: Region name -> vertex ids (``lips``, ``upper_face`` for the metrics), or None.
        fps: Motion frame rate.
        sample_rate: Audio sample rate in Hz.
    """

    train_subjects: tuple[str, ...] = ()
    templates: Mapping[str, Tensor] = field(default_factory=dict)
    faces: Tensor | None = None
    regions: Mapping[str, Tensor] | None = None
    fps: float = 30.0
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_subjects", tuple(self.train_subjects))
        object.__setattr__(
            self, "templates", {k: _tensor(v, torch.float32) for k, v in self.templates.items()}
        )
        if self.faces is not None:
            object.__setattr__(self, "faces", _tensor(self.faces, torch.int64))
        if self.regions is not None:
            object.__setattr__(self, "regions", {k: _tensor(v, torch.int64) for k, v in self.regions.items()})
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "sample_rate", int(self.sample_rate))
        if not self.fps > 0 or self.sample_rate <= 0:
            raise ValueError(f"fps={self.fps} and sample_rate={self.sample_rate} must be positive.")

    # ----------------------------------------------------------------------------------- checkpoint form
    def to_dict(self) -> dict[str, Any]:
        """Tensors and plain Python only, so that checkpoints load with ``torch.load(weights_only=True)``."""
        return {
            "train_subjects": list(self.train_subjects),
            "templates": dict(self.templates),
            "faces": self.faces,
            "regions": None if self.regions is None else dict(self.regions),
            "fps": self.fps,
            "sample_rate": self.sample_rate,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Assets | None:
        """The inverse of :meth:`to_dict`; None (or an empty dict) for a checkpoint without assets."""
        if not data:
            return None
        return cls(
            train_subjects=tuple(data.get("train_subjects") or ()),
            templates=data.get("templates") or {},
            faces=data.get("faces"),
            regions=data.get("regions"),
            fps=data.get("fps", 30.0),
            sample_rate=data.get("sample_rate", 16000),
        )

    # ----------------------------------------------------------------------------------------- queries
    def subject(self, subject: str | None) -> str:
        """``subject``, or the default (the first training subject) when None; raises when it has no template."""
        if subject is None:
            subject = self.train_subjects[0] if self.train_subjects else next(iter(self.templates), None)
        if subject not in self.templates:
            raise CheckpointError(
                f"subject '{subject}' is not in this checkpoint; choose one of {sorted(self.templates)}."
            )
        return subject

    def template(self, subject: str | None) -> Tensor:
        """The neutral mesh ``[V, 3]`` of ``subject`` (default: the first training subject)."""
        return self.templates[self.subject(subject)]

    def num_frames(self, num_samples: int) -> int:
        """Motion frames that cover ``num_samples`` of audio, a partial last frame included (so that a video of
        these frames never cuts the speech short)."""
        from audio.align import motion_frame_count

        frames = motion_frame_count(num_samples, self.sample_rate, self.fps)
        if frames * self.sample_rate < num_samples * self.fps:
            frames += 1
        return frames
