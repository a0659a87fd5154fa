"""The interface every waveform -> features encoder implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from audio.features import AudioFeatures
from audio.streaming import StreamingEncoder, concat_features


class AudioEncoder(nn.Module, ABC):
    """Maps a padded batch of waveforms to frame-level features.

    Implementations set ``sample_rate``, ``output_dim`` and ``frame_rate`` in their constructor and guarantee:

    * ``forward(wav, lengths).x.shape[1] == num_frames(wav.shape[1])``;
    * ``forward(wav, lengths).mask[b].sum() == num_frames(lengths[b])`` (valid frames are a prefix);
    * padded frames of ``x`` are zero.

    Attributes:
        sample_rate: Sample rate (Hz) the encoder expects its input at.
        output_dim: Feature size D of ``AudioFeatures.x``.
        frame_rate: Frames per second of the output.
    """

    sample_rate: int
    output_dim: int
    frame_rate: float

    @abstractmethod
    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> AudioFeatures:
        """Encode a batch of waveforms.

        Args:
            wav: Mono waveforms at ``sample_rate``, shape [B, N], float, right-padded.
            lengths: Number of valid samples per waveform, shape [B] (integer); None means all N are valid.

        Returns:
            AudioFeatures with x [B, Ta, D], mask [B, Ta], Ta = num_frames(N).
        """

    @abstractmethod
    def num_frames(self, num_samples: int) -> int:
        """Number of output frames for ``num_samples`` input samples (0 when too short for one frame)."""

    def encode_long(self, wav: Tensor, window_seconds: float, context_seconds: float) -> AudioFeatures:
        """Encode unpadded waveforms window by window, so the cost grows linearly with their length.

        Every window covers ``window_seconds`` of output frames plus up to ``context_seconds`` of audio on each side
        that is encoded but not emitted; concatenating the windows' own frames gives ``num_frames(N)`` frames. This
        generic version streams the encoder (:class:`audio.streaming.StreamingEncoder`), which is exact for
        encoders with a declared receptive field (the mel encoder) once the context covers it; encoders that
        attend over their whole input are approximated, and may override this with something cheaper or closer.

        Args:
            wav: ``[B, N]`` float waveforms, all N samples valid.
            window_seconds: Audio per window, context excluded (> 0).
            context_seconds: Context on each side of a window (>= 0).

        Returns:
            AudioFeatures with x ``[B, num_frames(N), D]`` and an all-True mask.
        """
        exact = getattr(self, "lookahead_frames", None) is not None
        stream = StreamingEncoder(
            self,
            chunk_seconds=window_seconds,
            left_context_seconds=context_seconds,
            lookahead_seconds=None if exact else context_seconds,
        )
        return concat_features(stream.encode_chunks([wav]))

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Vectorised ``num_frames`` over a [B] tensor of sample counts; returns [B] long on the same device."""
        return torch.tensor(
            [self.num_frames(int(n)) for n in lengths.tolist()], dtype=torch.long, device=lengths.device
        )

    def _check_input(self, wav: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        """Validate ``wav`` [B, N] and ``lengths`` [B]; return them with lengths as a long tensor."""
        if not isinstance(wav, Tensor) or wav.dim() != 2:
            shape = tuple(wav.shape) if isinstance(wav, Tensor) else type(wav).__name__
            raise ValueError(f"{type(self).__name__} expects wav of shape [B, N], got {shape}.")
        if not wav.is_floating_point():
            raise ValueError(f"{type(self).__name__} expects a float waveform, got dtype {wav.dtype}.")
        batch, num_samples = wav.shape
        if lengths is None:
            lengths = torch.full((batch,), num_samples, dtype=torch.long, device=wav.device)
        else:
            lengths = torch.as_tensor(lengths, device=wav.device)
            if lengths.shape != (batch,) or lengths.is_floating_point():
                raise ValueError(
                    f"lengths must be an integer tensor of shape [B] = [{batch}], got {tuple(lengths.shape)} "
                    f"{lengths.dtype}."
                )
            lengths = lengths.long()
            if bool((lengths < 0).any()) or bool((lengths > num_samples).any()):
                raise ValueError(f"lengths must lie in [0, N] = [0, {num_samples}], got {lengths.tolist()}.")
        if self.num_frames(num_samples) < 1:
            raise ValueError(
                f"{type(self).__name__} needs at least one frame of audio but the batch has only {num_samples} "
                f"samples; pad or lengthen the input."
            )
        return wav, lengths

    def _frame_mask(self, lengths: Tensor, num_frames: int) -> Tensor:
        """Bool mask [B, Ta] with True on the first ``num_frames(lengths[b])`` frames of each row."""
        frames = self.frame_lengths(lengths)
        return torch.arange(num_frames, device=lengths.device)[None, :] < frames[:, None]
