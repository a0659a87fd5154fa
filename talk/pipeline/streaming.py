"""Streaming audio -> motion with the flagship model: frames come out while the speech is still arriving.

Pipeline (every stage incremental, each exact with respect to its offline counterpart):

1. :class:`audio.StreamingEncoder` turns waveform chunks into encoder frames once their look-ahead has arrived
   (exact for the mel encoder; a documented approximation for transformer encoders).
2. :class:`TokenAudioAligner` resamples those frames at fixed rate to the motion frames and stacks the
   ``stride`` frames of each token (:meth:`TokenGenerator.token_features`), emitting a token frame as soon
   as every audio frame it reads has arrived.
3. :meth:`motion.lm.MotionLM.stream` turns token-rate features into codes, a frame as soon as its look-ahead
   allows.
4. :class:`motion.tokens.stream_decode.StreamingTokenDecoder` decodes codes into vertex offsets once the decoder's
   right reach is available.

The concatenated output equals :meth:`AudioToMotion.generate` on the whole waveform, sampled decoding included (tested).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch
from torch import Tensor, nn

from audio.features import AudioFeatures
from audio.streaming import StreamingEncoder
from motion.lm import Sampling
from talk.errors import CheckpointError, UserError
from talk.pipeline.generators import TokenGenerator


class TokenAudioAligner:
    """Encoder frames arriving in pieces -> LM input frames ``[1, n, stride * D]``, each emitted once final.

    Token frame q reads motion frames ``q*s .. q*s+s-1``, and motion frame t reads encoder frames
    ``floor(p)`` and ``floor(p)+1`` with ``p = t * frame_rate / fps``. A token frame is final once those have
    arrived; at the end of the stream the rest is emitted with the clamping offline resampling uses.

    Only the frames that future token frames can still read are kept: the buffer restarts at a token frame
    whose first audio position is a whole frame index (every ``block`` token frames), so re-reading it with
    :meth:`TokenGenerator.token_features` gives exactly the offline values at constant cost per push.
    """

    def __init__(self, generator: TokenGenerator, fps: float, frame_rate: float, feature_dim: int) -> None:
        self.generator = generator
        self.fps = float(fps)
        self.stride = generator.stride
        self.ratio = Fraction(frame_rate).limit_denominator(10**6) / Fraction(self.fps).limit_denominator(
            10**6
        )
        self.block = self.ratio.denominator  # token frames q with q * stride * ratio integral: q % block == 0
        self.frame_rate = frame_rate
        self.dim = self.stride * feature_dim
        self._x: Tensor | None = None  # kept encoder frames [1, n, D]
        self._offset = 0  # global index of self._x[:, 0]
        self._received = 0
        self._emitted = 0

    def _last_frame_needed(self, token: int) -> int:
        t = (token + 1) * self.stride - 1
        return math.floor(t * self.ratio) + 1

    def _first_frame(self, token: int) -> int:
        """Global audio frame at which a buffer starting on the block boundary before ``token`` begins."""
        base = token // self.block * self.block
        return int(base * self.stride * self.ratio)

    def push(self, features: AudioFeatures) -> Tensor:
        """Add encoder frames; returns the token frames that became final (possibly none)."""
        if features.x.shape[1]:
            self._x = features.x if self._x is None else torch.cat([self._x, features.x], dim=1)
            self._received += features.x.shape[1]
        ready = self._emitted
        while self._last_frame_needed(ready) <= self._received - 1:
            ready += 1
        return self._emit(ready)

    def finish(self, total_tokens: int) -> Tensor:
        """The remaining token frames up to ``total_tokens``, reading the stream's last frames as offline does."""
        return self._emit(total_tokens)

    def _emit(self, stop: int) -> Tensor:
        if stop <= self._emitted or self._x is None:
            return torch.zeros(1, 0, self.dim, device=None if self._x is None else self._x.device)
        base = self._emitted // self.block * self.block
        x = self._x[:, self._first_frame(base) - self._offset :]
        feats = AudioFeatures(x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device), self.frame_rate)
        out = self.generator.token_features(feats, stop - base, self.fps)[:, self._emitted - base :]
        self._emitted = stop
        keep = self._first_frame(stop)  # frames before it are never read again
        self._x = self._x[:, keep - self._offset :]
        self._offset = keep
        return out


@dataclass
class StreamStats:
    """Timing of a streamed animation (seconds, wall clock)."""

    frames: int = 0
    first_frame_latency: float | None = None  # from pushing the audio chunk that completed it to its yield
    compute_seconds: float = 0.0
    chunk_latencies: list[float] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.compute_seconds if self.compute_seconds > 0 else float("inf")


class Streamer:
    """Vertices ``[m, V, 3]`` from audio chunks, yielded as soon as they are decided.

    Args:
        model: A :class:`~talk.pipeline.AudioToMotion` whose generator is a :class:`TokenGenerator` (typed as a
            module here so that the dependency runs one way: the model's ``stream`` uses this class).
        subject: Subject whose template and style drive the face (default: the first training subject).
        chunk_seconds: Audio handed to the encoder at a time.
        left_context_seconds: Encoder left context (None: the exact minimum, for encoders that declare one).
        sampling: Overrides the model's sampling (default: the model's, so that the stream draws what
            :meth:`AudioToMotion.generate` draws).
    """

    def __init__(
        self,
        model: nn.Module,
        subject: str | None = None,
        chunk_seconds: float = 0.2,
        left_context_seconds: float | None = None,
        sampling: Sampling | None = None,
    ) -> None:
        if not isinstance(model.generator, TokenGenerator):
            raise CheckpointError(
                f"streaming needs an audio-to-motion token model; this checkpoint holds a "
                f"{type(model.generator).__name__}. Drop --stream, or use a checkpoint of experiments/*/lm.yaml."
            )
        if model.training:
            raise UserError("Streamer needs a model in eval mode; call model.eval() first.")
        self.model = model
        assets = model.require_assets()
        subject = assets.subject(subject)
        self.device = model.device
        self.template = assets.template(subject).float().to(self.device)
        self.style = model.style_weights(subject)[None].to(self.device)
        self.sample_rate = assets.sample_rate
        self.assets = assets
        self.chunk_samples = max(1, round(chunk_seconds * self.sample_rate))
        self.chunk_seconds = chunk_seconds
        self.left_context_seconds = left_context_seconds
        self.sampling = sampling or model.sampling
        self.stats = StreamStats()
        # called with each piece's face-model parameters [m, D] (within their bounds) when the model has them
        self.on_params: Callable[[Tensor], None] | None = None

    def latency_seconds(self) -> float:
        """Algorithmic latency: audio that must arrive after a frame's time before it can be produced."""
        enc = StreamingEncoder(self.model.audio_encoder, self.chunk_seconds, self.left_context_seconds)
        generator = self.model.generator
        return enc.latency_seconds + generator.latency_tokens() * generator.stride / self.model.fps

    def stream(self, chunks: Iterable[Tensor | np.ndarray]) -> Iterator[Tensor]:
        """Yields vertices ``[m, V, 3]`` while ``chunks`` (mono waveforms ``[n]`` at the model's rate) arrive."""
        model = self.model
        generator = model.generator
        encoder = StreamingEncoder(model.audio_encoder, self.chunk_seconds, self.left_context_seconds)
        aligner = TokenAudioAligner(
            generator, model.fps, encoder.encoder.frame_rate, model.audio_encoder.output_dim
        )
        state = {"samples": 0, "pushed_at": 0.0}
        self.stats = stats = StreamStats()

        def token_audio() -> Iterator[Tensor]:
            for chunk in chunks:
                wav = torch.as_tensor(chunk, dtype=torch.float32).reshape(1, -1).to(self.device)
                state["samples"] += wav.shape[1]
                state["pushed_at"] = time.perf_counter()
                yield aligner.push(encoder.push(wav))
            if state["samples"] == 0:
                raise UserError("the audio stream was empty; nothing to animate.")
            state["pushed_at"] = time.perf_counter()
            tail = aligner.push(encoder.flush())
            frames = self.assets.num_frames(state["samples"])
            state["frames"] = frames
            yield torch.cat([tail, aligner.finish(int(generator.num_tokens(torch.tensor(frames))))], dim=1)

        start = time.perf_counter()
        for motion in generator.stream(token_audio(), self.style, self.sampling, lambda: state["frames"]):
            yield self._vertices(motion, stats, state["pushed_at"])
        stats.compute_seconds = time.perf_counter() - start

    def _vertices(self, motion: Tensor, stats: StreamStats, pushed_at: float) -> Tensor:
        if self.on_params is not None and self.model.face_model is not None:
            self.on_params(self.model.constrain(motion)[0])
        offsets = self.model.to_offsets(motion, self.template[None])  # as offline generation does
        now = time.perf_counter()
        if stats.first_frame_latency is None:
            stats.first_frame_latency = now - pushed_at
        stats.chunk_latencies.append(now - pushed_at)
        stats.frames += offsets.shape[1]
        return (self.template + offsets[0].view(offsets.shape[1], -1, 3)).cpu()

    def stream_file(self, wav: np.ndarray | Tensor) -> Iterator[Tensor]:
        """Streams a whole waveform ``[N]`` cut into ``chunk_seconds`` pieces (simulated real time)."""
        wav = torch.as_tensor(wav, dtype=torch.float32).reshape(-1)
        n = self.chunk_samples
        return self.stream(wav[i : i + n] for i in range(0, wav.shape[0], n))
