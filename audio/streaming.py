"""Chunked, left-context streaming over any AudioEncoder, matching offline encoding.

This module depends on the encoder *contract* only (:class:`FrameEncoder`), not on :mod:`audio.encoder`, so that
``AudioEncoder.encode_long`` can build on it: the dependency goes ``audio.encoder -> audio.streaming``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

from audio.features import AudioFeatures
from talk.errors import UserError

# Right look-ahead used for encoders without a declared receptive field (wav2vec2 / HuBERT / WavLM). Their
# transformer attends to the whole input, so no finite margin is exact. 10 frames (200 ms) keeps the total delay
# at 0.4 s with 0.2 s chunks (interactive); the table in the StreamingEncoder docstring shows that 1 s of
# look-ahead roughly halves the error, for offline-like uses that can afford the latency.
DEFAULT_UNBOUNDED_LOOKAHEAD_SECONDS = 0.2


class StreamingError(UserError, ValueError):
    """A streaming encoder was configured or fed incorrectly; the message names the argument and the fix."""


class FrameEncoder(Protocol):
    """What streaming needs of an :class:`audio.encoder.AudioEncoder` (which satisfies it): an ``nn.Module`` with
    these attributes, optionally ``lookahead_frames`` and ``receptive_field_samples`` (exact streaming)."""

    sample_rate: int
    output_dim: int
    frame_rate: float

    def num_frames(self, num_samples: int) -> int: ...

    def __call__(self, wav: Tensor) -> AudioFeatures: ...


# Checked at construction: the attributes of the AudioEncoder contract that streaming reads.
_CONTRACT = ("sample_rate", "output_dim", "frame_rate", "num_frames")


def concat_features(parts: Iterable[AudioFeatures]) -> AudioFeatures:
    """Concatenate AudioFeatures chunks along time (all parts must share B, D and frame_rate).

    Args:
        parts: Chunks with x [B, Ta_i, D] and all-valid masks, as yielded by ``StreamingEncoder``.

    Returns:
        AudioFeatures with x [B, sum Ta_i, D].
    """
    parts = list(parts)
    if not parts:
        raise StreamingError("concat_features needs at least one AudioFeatures chunk, got none.")
    rates = {p.frame_rate for p in parts}
    if len(rates) != 1:
        raise StreamingError(f"concat_features got chunks with different frame rates {sorted(rates)}.")
    x = torch.cat([p.x for p in parts], dim=1)
    mask = torch.cat([p.mask for p in parts], dim=1)
    return AudioFeatures(x=x, mask=mask, frame_rate=parts[0].frame_rate)


class StreamingEncoder:
    """Encodes a waveform that arrives piece by piece, emitting each feature frame once it is final.

    Scheme: the stream is cut into chunks of ``chunk_samples`` (``chunk_seconds`` rounded up to whole frame
    strides). Whenever a chunk completes, the encoder re-encodes a window made of up to ``left_context`` frames
    of already-emitted audio followed by everything not yet emitted, and emits the frames whose right look-ahead
    lies inside the received audio. The window always starts on the frame grid (a multiple of the encoder's
    stride), so local frame j of the window is global frame ``start / stride + j``. ``flush()`` encodes the rest
    with the end of the signal treated exactly as offline encoding treats it. Chunks are processed one at a
    time whatever the sizes given to ``push``, so the output depends only on the signal, not on how it was split.

    Exactness:

    * Encoders that declare ``lookahead_frames`` and ``receptive_field_samples`` (``MelEncoder``) are streamed
      exactly: the look-ahead is ``lookahead_frames`` and the left context is raised to the minimum that covers
      the receptive field, ``ceil((receptive_field_samples - (lookahead_frames + 1) * stride) / stride)`` frames
      (3 frames = 60 ms for the default MelEncoder). The result equals offline encoding to float error (< 1e-5).
    * Other encoders (``HFSpeechEncoder``) attend over the whole input (self-attention, a 128-frame positional
      convolution, GroupNorm over time in group-norm feature encoders, per-utterance input normalisation), so
      streaming only approximates them; the look-ahead defaults to 0.2 s (10 frames). Measured on a tiny random
      wav2vec2 (hidden 32, 2 layers, seed 0; features after the final LayerNorm have unit std) streaming the
      bundled 3.1 s ARCTIC utterance in 0.2 s chunks, abs difference to offline encoding, mean (max):

      ============================  ===========  ===========  ===========  ===========  ===========
      left context (s)              0.2          0.5          1.0          2.0          4.0 (all)
      group norm, look-ahead 0.2 s  0.27 (2.4)   0.24 (2.9)   0.20 (2.0)   0.17 (1.3)   0.15 (1.3)
      group norm, look-ahead 1.0 s  0.21 (2.2)   0.16 (1.7)   0.14 (1.6)   0.06 (1.1)   0.06 (1.1)
      layer norm, look-ahead 0.2 s  0.16 (1.4)   0.14 (1.3)   0.11 (1.0)   0.10 (1.0)   0.09 (1.0)
      layer norm, look-ahead 1.0 s  0.11 (1.0)   0.09 (1.0)   0.06 (1.0)   0.04 (1.0)   0.04 (1.0)
      ============================  ===========  ===========  ===========  ===========  ===========

      The largest errors sit in the first second, where offline encoding sees far more future than any chunk;
      frames of the final window (flushed with the whole remaining signal) differ only through the truncated
      past, and not at all once the context covers the whole stream. Random weights attend almost
      uniformly, a worst case for truncation; trained checkpoints attend more locally. The bound tested in
      ``tests/audio/test_streaming.py`` is for the group-norm model on 2 s of that utterance; measure your own
      checkpoint the same way before relying on streamed transformer features.

    Latency: a sample waits at most one chunk before it is encoded, and its frame is emitted only once the
    look-ahead has arrived, so ``latency_seconds = chunk_seconds + lookahead_seconds`` (compute time excluded);
    ``lookahead_seconds`` counts the samples needed after the end of a frame's own stride (for wav2vec2 this
    includes the 80 samples by which its 400-sample window overhangs the 320-sample stride).

    All rows of a batch advance together (equal lengths). Run the encoder in eval mode: dropout would make every
    re-encoded window different. Encoding runs under ``torch.no_grad``.

    Args:
        encoder: The AudioEncoder to stream; its ``frame_rate`` must divide its ``sample_rate``.
        chunk_seconds: Audio per encoder call, rounded up to whole frames (> 0).
        left_context_seconds: Already-emitted audio re-encoded before each chunk (>= 0). For exact encoders it is
            raised to the receptive-field minimum; None uses that minimum (exact encoders only).
        lookahead_seconds: Right margin (>= 0) a frame waits for before it is emitted, rounded up to whole frames;
            None = the encoder's ``lookahead_frames`` when declared, else 0.2 s. Exact encoders refuse a value
            smaller than their ``lookahead_frames``.
    """

    def __init__(
        self,
        encoder: FrameEncoder,
        chunk_seconds: float = 0.2,
        left_context_seconds: float | None = 2.0,
        lookahead_seconds: float | None = None,
    ) -> None:
        if not isinstance(encoder, nn.Module) or not all(hasattr(encoder, a) for a in _CONTRACT):
            raise StreamingError(
                f"StreamingEncoder encoder must be an AudioEncoder, got {type(encoder).__name__}."
            )
        stride = encoder.sample_rate / encoder.frame_rate
        if abs(stride - round(stride)) > 1e-6:
            raise StreamingError(
                f"StreamingEncoder needs an integer frame stride, but {type(encoder).__name__} has sample_rate "
                f"{encoder.sample_rate} and frame_rate {encoder.frame_rate}."
            )
        if not chunk_seconds > 0:
            raise StreamingError(f"StreamingEncoder chunk_seconds must be positive, got {chunk_seconds}.")
        self.encoder = encoder
        self.stride = int(round(stride))
        sr = encoder.sample_rate
        # Round to microseconds first so that e.g. 0.2 s at 16 kHz is exactly 3200 samples, not 3201.
        self.chunk_frames = max(1, math.ceil(round(chunk_seconds * sr, 6) / self.stride))

        declared = getattr(encoder, "lookahead_frames", None)
        receptive = getattr(encoder, "receptive_field_samples", None)
        self.exact = declared is not None and receptive is not None
        if lookahead_seconds is None:
            look = int(declared) if self.exact else self._frames(DEFAULT_UNBOUNDED_LOOKAHEAD_SECONDS, "")
        else:
            look = self._frames(lookahead_seconds, "lookahead_seconds")
            if self.exact and look < int(declared):
                raise StreamingError(
                    f"StreamingEncoder lookahead_seconds={lookahead_seconds} is shorter than the "
                    f"{int(declared)} frames {type(encoder).__name__} looks ahead; pass None or at least "
                    f"{int(declared) * self.stride / sr} s."
                )
        self.lookahead_frames = look

        if self.exact:
            needed = int(receptive) - (int(declared) + 1) * self.stride
            self.min_context_frames = max(0, math.ceil(needed / self.stride))
        else:
            self.min_context_frames = 0
        if left_context_seconds is None:
            if not self.exact:
                raise StreamingError(
                    f"StreamingEncoder left_context_seconds=None needs an encoder with a declared receptive field; "
                    f"{type(encoder).__name__} has none, so pass a duration such as 2.0."
                )
            context = 0
        else:
            context = self._frames(left_context_seconds, "left_context_seconds")
        self.context_frames = max(context, self.min_context_frames)
        self.reset()

    def _frames(self, seconds: float, name: str) -> int:
        if not seconds >= 0:
            raise StreamingError(f"StreamingEncoder {name} must be >= 0, got {seconds}.")
        return math.ceil(round(seconds * self.encoder.sample_rate, 6) / self.stride)

    # ----------------------------------------------------------------------------------------------- properties

    @property
    def chunk_samples(self) -> int:
        """Samples per encoder call (a whole number of frame strides)."""
        return self.chunk_frames * self.stride

    @property
    def chunk_seconds(self) -> float:
        """``chunk_samples`` in seconds."""
        return self.chunk_samples / self.encoder.sample_rate

    @property
    def left_context_seconds(self) -> float:
        """Left context actually re-encoded with each chunk, in seconds."""
        return self.context_frames * self.stride / self.encoder.sample_rate

    @property
    def lookahead_samples(self) -> int:
        """Samples a frame waits for after the end of its own stride before it is emitted."""
        return self._min_samples(1 + self.lookahead_frames) - self.stride

    @property
    def lookahead_seconds(self) -> float:
        """``lookahead_samples`` in seconds."""
        return self.lookahead_samples / self.encoder.sample_rate

    @property
    def latency_seconds(self) -> float:
        """Worst-case algorithmic delay from a sample arriving to its frame being emitted (chunk + look-ahead)."""
        return self.chunk_seconds + self.lookahead_seconds

    def _min_samples(self, frames: int) -> int:
        """Fewest input samples for which the encoder yields ``frames`` frames (num_frames is monotone)."""
        lo, hi = 0, (frames + 1) * self.stride
        while self.encoder.num_frames(hi) < frames:
            hi *= 2
        while lo < hi:
            mid = (lo + hi) // 2
            if self.encoder.num_frames(mid) >= frames:
                hi = mid
            else:
                lo = mid + 1
        return lo

    # --------------------------------------------------------------------------------------------------- stream

    def reset(self) -> None:
        """Forget the stream: the next ``push`` starts a new signal."""
        self._buffer: Tensor | None = None  # [B, n] samples from global sample _start on
        self._start = 0  # global index of _buffer[:, 0], a multiple of stride
        self._received = 0  # total samples pushed
        self._emitted = 0  # frames emitted so far
        self._encoded_until = 0  # samples up to which complete chunks have been processed

    def _empty(self, batch: int) -> AudioFeatures:
        dim = self.encoder.output_dim
        ref = self._buffer if self._buffer is not None else torch.zeros(())
        x = torch.zeros(batch, 0, dim, dtype=torch.float32, device=ref.device)
        return AudioFeatures(
            x=x,
            mask=torch.zeros(batch, 0, dtype=torch.bool, device=ref.device),
            frame_rate=self.encoder.frame_rate,
        )

    def push(self, samples: Tensor | np.ndarray) -> AudioFeatures:
        """Append samples and return the frames that became final.

        Args:
            samples: New audio, shape [B, n] (or [n] for B = 1), float, at the encoder's sample rate.

        Returns:
            AudioFeatures with x [B, Ta_new, D] (Ta_new may be 0) and an all-True mask.
        """
        samples = self._check_samples(samples)
        if self._buffer is None:
            self._buffer = samples
        else:
            if samples.shape[0] != self._buffer.shape[0]:
                raise StreamingError(
                    f"StreamingEncoder.push got batch size {samples.shape[0]} but the stream has "
                    f"{self._buffer.shape[0]}; call reset() to start a new stream."
                )
            self._buffer = torch.cat([self._buffer, samples.to(self._buffer)], dim=1)
        self._received += samples.shape[1]
        outputs = []
        while self._received - self._encoded_until >= self.chunk_samples:
            self._encoded_until += self.chunk_samples
            final = self.encoder.num_frames(self._encoded_until) - self.lookahead_frames
            outputs.append(self._encode_until(self._encoded_until, final))
        outputs = [o for o in outputs if o.x.shape[1] > 0]
        return concat_features(outputs) if outputs else self._empty(self._buffer.shape[0])

    def flush(self) -> AudioFeatures:
        """Encode everything not yet emitted, treating the end of the stream as offline encoding does, and reset.

        Returns:
            AudioFeatures with the remaining frames, x [B, Ta_rest, D].
        """
        if self._buffer is None:
            raise StreamingError("StreamingEncoder.flush called before any push; push audio first.")
        out = self._encode_until(self._received, self.encoder.num_frames(self._received))
        self.reset()
        return out

    def encode_chunks(self, chunks: Iterable[Tensor | np.ndarray]) -> Iterator[AudioFeatures]:
        """Stream an iterable of sample chunks; yield every non-empty result of ``push`` and then ``flush``.

        Starts from a fresh stream. Concatenating the yielded features (``concat_features``) gives the
        streamed encoding of the whole signal.

        Args:
            chunks: Pieces of audio, each [B, n] (or [n]) of any length.

        Yields:
            AudioFeatures with x [B, Ta_i, D], Ta_i >= 1.
        """
        self.reset()
        for chunk in chunks:
            out = self.push(chunk)
            if out.x.shape[1] > 0:
                yield out
        if self._buffer is not None:
            out = self.flush()
            if out.x.shape[1] > 0:
                yield out

    def _check_samples(self, samples: Tensor | np.ndarray) -> Tensor:
        if isinstance(samples, np.ndarray):
            samples = torch.from_numpy(samples)
        if not isinstance(samples, Tensor):
            raise StreamingError(
                f"StreamingEncoder.push expects a tensor [B, n], got {type(samples).__name__}."
            )
        if samples.dim() == 1:
            samples = samples[None]
        if samples.dim() != 2 or not samples.is_floating_point():
            raise StreamingError(
                f"StreamingEncoder.push expects float samples of shape [B, n] or [n], got "
                f"{tuple(samples.shape)} {samples.dtype}."
            )
        return samples

    def _encode_until(self, end: int, final: int) -> AudioFeatures:
        """Encode buffered samples [start, end) and emit global frames [emitted, final); trim the buffer."""
        assert self._buffer is not None
        batch = self._buffer.shape[0]
        if final <= self._emitted:
            return self._empty(batch)
        window = self._buffer[:, : end - self._start]
        first = self._start // self.stride  # global index of the window's local frame 0
        with torch.no_grad():
            feats = self.encoder(window)
        x = feats.x[:, self._emitted - first : final - first]
        if x.shape[1] != final - self._emitted:  # would mean num_frames is not shift-invariant on the grid
            raise RuntimeError(
                f"{type(self.encoder).__name__} produced {feats.x.shape[1]} frames for a {window.shape[1]}-sample "
                f"window; StreamingEncoder needs frame i to start at sample i * {self.stride}."
            )
        self._emitted = final
        new_start = max(0, self._emitted - self.context_frames) * self.stride
        self._buffer = self._buffer[:, new_start - self._start :]
        self._start = new_start
        out = AudioFeatures(
            x=x.float(),
            mask=torch.ones(x.shape[:2], dtype=torch.bool, device=x.device),
            frame_rate=self.encoder.frame_rate,
        )
        return out
