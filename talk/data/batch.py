"""The batch that every talk DataModule yields, and the collate function that pads variable-length sequences."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Sample:
    """One sequence as read from disk.

    Attributes:
        name: Sequence name, e.g. ``FaceTalk_170725_00137_TA_sentence01``.
        subject: Subject name.
        audio: Waveform ``[N]`` float32 at the dataset's sample rate.
        motion: Vertices ``[T, V, 3]`` at the dataset's motion fps.
        template: Neutral mesh ``[V, 3]`` of the subject.
        style: Index of the subject among the training subjects, or -1 for subjects not seen in training.
        dataset: Dataset name (travels with the batch for multi-dataset training).
    """

    name: str
    subject: str
    audio: Tensor
    motion: Tensor
    template: Tensor
    style: int
    dataset: str = "vocaset"


@dataclass
class Batch:
    """A padded batch.

    Attributes:
        audio: ``[B, N]`` float32 waveforms, zero padded.
        audio_lengths: ``[B]`` valid samples per sequence.
        motion: ``[B, T, V, 3]`` vertices, padded with the last valid frame's template.
        motion_mask: ``[B, T]`` bool, True on valid frames.
        template: ``[B, V, 3]``.
        style: ``[B]`` long, training-subject index or -1.
        names: Sequence names.
        subjects: Subject names.
        datasets: Dataset names.
    """

    audio: Tensor
    audio_lengths: Tensor
    motion: Tensor
    motion_mask: Tensor
    template: Tensor
    style: Tensor
    names: list[str]
    subjects: list[str]
    datasets: list[str]

    @property
    def motion_lengths(self) -> Tensor:
        """``[B]`` valid motion frames per sequence."""
        return self.motion_mask.sum(dim=1)


def collate(samples: list[Sample]) -> Batch:
    """Pads a list of samples into a :class:`Batch`."""
    b = len(samples)
    n_max = max(s.audio.shape[0] for s in samples)
    t_max = max(s.motion.shape[0] for s in samples)
    v = samples[0].motion.shape[1]
    audio = torch.zeros(b, n_max)
    audio_lengths = torch.zeros(b, dtype=torch.long)
    motion = torch.zeros(b, t_max, v, 3)
    mask = torch.zeros(b, t_max, dtype=torch.bool)
    for i, s in enumerate(samples):
        audio[i, : s.audio.shape[0]] = s.audio
        audio_lengths[i] = s.audio.shape[0]
        t = s.motion.shape[0]
        motion[i, :t] = s.motion
        motion[i, t:] = s.template
        mask[i, :t] = True
    return Batch(
        audio=audio,
        audio_lengths=audio_lengths,
        motion=motion,
        motion_mask=mask,
        template=torch.stack([s.template for s in samples]),
        style=torch.tensor([s.style for s in samples], dtype=torch.long),
        names=[s.name for s in samples],
        subjects=[s.subject for s in samples],
        datasets=[s.dataset for s in samples],
    )
