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
        expression: FLAME expression coefficients ``[T, Ne]`` at the motion fps, for motion read from FLAME
            parameters (None otherwise).
        jaw: FLAME jaw axis-angle ``[T, 3]`` at the motion fps (with ``expression``).
        coefficients: ``[T, D]`` face-model motion at the motion fps for motion read as ARKit weights (``D = 52``)
            or BFM expression coefficients (``D = 64``); None otherwise.
        coefficients_kind: ``"arkit"`` or ``"bfm"`` with ``coefficients``.
    """

    name: str
    subject: str
    audio: Tensor
    motion: Tensor
    template: Tensor
    style: int
    dataset: str = "vocaset"
    expression: Tensor | None = None
    jaw: Tensor | None = None
    coefficients: Tensor | None = None
    coefficients_kind: str | None = None


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
        expression: ``[B, T, Ne]`` FLAME expression coefficients (zero padded to the widest sequence and past
            each length) when every sequence was read from FLAME parameters, else None.
        jaw: ``[B, T, 3]`` FLAME jaw axis-angle, likewise.
        coefficients: ``[B, T, D]`` ARKit weights or BFM expression coefficients (zero past each length) when
            every sequence was read as the same kind of coefficients, else None.
        coefficients_kind: their kind, ``"arkit"`` or ``"bfm"``.
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
    expression: Tensor | None = None
    jaw: Tensor | None = None
    coefficients: Tensor | None = None
    coefficients_kind: str | None = None

    @property
    def motion_lengths(self) -> Tensor:
        """``[B]`` valid motion frames per sequence."""
        return self.motion_mask.sum(dim=1)

    def face_motion(self, kind: str, dim: int) -> Tensor:
        """The motion ``[B, T, dim]`` in a face model's parameters: ``kind`` ``"flame"`` (:meth:`flame_motion`),
        ``"arkit"`` or ``"bfm"`` (:attr:`coefficients`).

        Raises:
            DatasetError: when the batch was not read as that kind of motion.
        """
        if kind == "flame":
            return self.flame_motion(dim - 3)
        if self.coefficients is None or self.coefficients_kind != kind or self.coefficients.shape[-1] != dim:
            from talk.errors import DatasetError

            what = {
                "arkit": "ARKit weights (arkit_manifest.jsonl)",
                "bfm": "BFM coefficients (bfm_manifest.jsonl)",
            }
            raise DatasetError(
                f"this model works on {what.get(kind, kind)} [T, {dim}] but the data holds "
                f"{self.coefficients_kind or 'vertices or FLAME parameters'}; use a talk.data.ManifestDataModule "
                f"whose lines are {kind} motion files, e.g. data/synthetic/{kind}_manifest.jsonl."
            )
        return self.coefficients

    def flame_motion(self, n_expression: int) -> Tensor:
        """FLAME motion ``[B, T, n_expression + 3]``: the expression coefficients (zero padded or cut to
        ``n_expression``), then the jaw axis-angle.

        Raises:
            DatasetError: when the batch was not read from FLAME parameters.
        """
        if self.expression is None or self.jaw is None:
            from talk.errors import DatasetError

            raise DatasetError(
                "this model works on FLAME parameters but the data holds vertices only; use a "
                "talk.data.ManifestDataModule whose lines are FLAME .npz files (e.g. data/synthetic/flame_manifest.jsonl)."
            )
        expression = self.expression[..., :n_expression]
        pad = n_expression - expression.shape[-1]
        if pad:
            expression = torch.nn.functional.pad(expression, (0, pad))
        return torch.cat([expression, self.jaw], dim=-1)


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
    expression = jaw = None
    if all(s.expression is not None and s.jaw is not None for s in samples):
        expression = torch.zeros(b, t_max, max(s.expression.shape[1] for s in samples))
        jaw = torch.zeros(b, t_max, 3)
        for i, s in enumerate(samples):
            expression[i, : s.expression.shape[0], : s.expression.shape[1]] = s.expression
            jaw[i, : s.jaw.shape[0]] = s.jaw
    coefficients = None
    kinds = {s.coefficients_kind for s in samples}
    if len(kinds) == 1 and None not in kinds:
        coefficients = torch.zeros(b, t_max, samples[0].coefficients.shape[1])
        for i, s in enumerate(samples):
            coefficients[i, : s.coefficients.shape[0]] = s.coefficients
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
        expression=expression,
        jaw=jaw,
        coefficients=coefficients,
        coefficients_kind=kinds.pop() if coefficients is not None else None,
    )
