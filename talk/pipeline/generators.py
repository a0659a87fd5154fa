"""Generators: audio features aligned to the motion -> motion ``[B, T, D]``. The two families of ``talk``.

- :class:`TokenGenerator`: the flagship. Features at the token rate -> MotionLM codes -> the frozen tokenizer's
  decoder. Streams: :meth:`TokenGenerator.stream_session` decodes while features arrive, with the same steps.
- :class:`RegressionGenerator`: the FaceFormer-style baseline. Features at the motion rate -> vertex offsets,
  directly or as coefficients of a linear (PCA) basis of the training motion.

Both return motion in the space of the face model they work in (vertex offsets in metres, or face-model
parameters); :class:`talk.pipeline.AudioToMotion` turns it into vertices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from audio.align import interpolate_features, resample_features
from audio.features import AudioFeatures
from motion.lm import Generation, MotionLM, Sampling
from motion.regression.regressor import FaceFormerRegressor
from motion.tokens.stream_decode import StreamingTokenDecoder
from motion.tokens.tokenizer import MotionTokenizer

DECODE_LATENTS = ("codes", "expected")


class TokenGenerator(nn.Module):
    """MotionLM over the codes of a frozen motion tokenizer.

    Audio reaches the LM at the token rate: the encoder's features are resampled at fixed rate to the motion
    frames (:func:`audio.align.resample_features`, causal, so streaming equals offline) and the ``stride`` motion
    frames of each token are stacked, so the LM reads ``stride * D`` features per token frame.

    Args:
        lm: The language model over the tokenizer's codes.
        tokenizer: The trained motion tokenizer (frozen here: eval mode whatever the module's mode).
        decode_codebooks: Decode from the first n codebooks only (the LM still generates all K, which it reads
            back); None decodes all. Quantizer dropout trains the tokenizer to decode any prefix.
        decode_latent: ``"codes"`` decodes the generated codes; ``"expected"`` decodes, for every token frame, the
            expectation of each codebook's code vectors under the LM's predictive distribution (given the codes
            generated before it): the least-squares estimate of the latent where the LM is unsure.
    """

    def __init__(
        self,
        lm: MotionLM,
        tokenizer: MotionTokenizer,
        decode_codebooks: int | None = None,
        decode_latent: str = "codes",
    ) -> None:
        super().__init__()
        k = tokenizer.num_quantizers
        if decode_codebooks is not None and not 1 <= decode_codebooks <= k:
            raise ValueError(
                f"decode_codebooks={decode_codebooks} must lie in [1, {k}] (the tokenizer's codebooks)."
            )
        if decode_latent not in DECODE_LATENTS:
            raise ValueError(f"decode_latent={decode_latent!r} must be one of {DECODE_LATENTS}.")
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        self.lm = lm
        self.decode_codebooks = decode_codebooks or k
        self.decode_latent = decode_latent

    def train(self, mode: bool = True) -> TokenGenerator:
        super().train(mode)
        self.tokenizer.eval()  # frozen: no EMA codebook updates, no quantizer dropout
        return self

    @property
    def stride(self) -> int:
        return self.tokenizer.stride

    @property
    def expected(self) -> bool:
        return self.decode_latent == "expected"

    def num_tokens(self, num_frames: Tensor) -> Tensor:
        """Token frames ``[B]`` covering ``num_frames`` ``[B]`` motion frames."""
        return torch.div(num_frames + self.stride - 1, self.stride, rounding_mode="floor")

    def token_features(self, features: AudioFeatures, tokens: Tensor | int, fps: float) -> Tensor:
        """Encoder features -> LM input ``[B, Tq, stride * D]`` (token frame q stacks motion frames qs..qs+s-1)."""
        x = resample_features(features, tokens * self.stride, fps=fps).x
        b, t, d = x.shape
        return x.reshape(b, t // self.stride, self.stride * d)

    def expected_latent(self, probs: Tensor) -> Tensor:
        """``[B, Tq, latent]``: the expected sum of the first ``decode_codebooks`` code vectors under ``probs``
        ``[B, K, Tq, C]`` (the LM's per-codebook distributions)."""
        n = self.decode_codebooks
        vectors = self.tokenizer.quantizer.codebooks[:n].to(probs.dtype)  # [n, C, latent]
        return torch.einsum("bkqc,kcd->bqd", probs[:, :n], vectors)

    def generate(
        self, features: AudioFeatures, num_frames: Tensor, style: Tensor, sampling: Sampling, fps: float
    ) -> Tensor:
        """Motion ``[B, T, D]`` with ``T = num_frames.max()``.

        Args:
            features: Encoder features of the audio.
            num_frames: ``[B]`` motion frames per sequence.
            style: ``[B]`` style ids or ``[B, S]`` style weights.
            sampling: How codes are chosen.
            fps: Motion frame rate.
        """
        audio = self.lm_input(features, num_frames, fps)
        steps = int(self.num_tokens(num_frames).max())
        out = self.lm.generate(audio, style, steps, sampling, return_probs=self.expected)
        return self.decode(out, int(num_frames.max()))

    def lm_input(self, features: AudioFeatures, num_frames: Tensor, fps: float) -> Tensor:
        """The LM's audio input ``[B, Tq, stride * Da]`` for ``num_frames`` ``[B]`` motion frames (each sequence
        resampled to its own token count); what generation reads, and what training conditions on."""
        return self.token_features(features, self.num_tokens(num_frames), fps)

    def decode(self, generation: Generation, length: int) -> Tensor:
        """Motion ``[B, length, D]`` of generated codes (or of their expected latents)."""
        if self.expected:
            return self.tokenizer.decode_latent(self.expected_latent(generation.probs), length)
        return self.tokenizer.decode(generation.codes[:, : self.decode_codebooks], length=length)

    def stream(
        self, token_audio: Iterable[Tensor], style: Tensor, sampling: Sampling, num_frames: Callable[[], int]
    ) -> Iterator[Tensor]:
        """Motion pieces ``[B, m, D]`` while LM inputs ``[B, n, stride * Da]`` arrive, each as soon as it is final.

        Runs the same LM steps as :meth:`generate` and decodes them the same way, so the concatenated pieces equal
        :meth:`generate` on the whole input (sampled decoding too: both draw from ``sampling``'s seeded
        generator). ``num_frames()`` is called once ``token_audio`` is exhausted and gives the total frame count.
        """
        decoder = StreamingTokenDecoder(self.tokenizer)
        for out in self.lm.stream(token_audio, style, sampling, return_probs=self.expected):
            if self.expected:
                motion = decoder.push_latent(self.expected_latent(out.probs))
            else:
                motion = decoder.push(out.codes[:, : self.decode_codebooks])
            if motion.shape[1]:
                yield motion
        motion = decoder.flush(num_frames())
        if motion.shape[1]:
            yield motion

    def latency_tokens(self) -> int:
        """Token frames a streamed frame waits for after its own: the LM's look-ahead and the decoder's reach."""
        lm_tokens = max(self.lm.lookahead, self.lm.pattern.max_delay - 1)
        return lm_tokens + StreamingTokenDecoder(self.tokenizer).latency_tokens + 1


class RegressionGenerator(nn.Module):
    """Features aligned to the motion frames -> regressor -> vertex offsets (metres).

    With ``basis_components`` set, the regressor predicts coefficients of a linear basis of vertex offsets
    (principal components of the training motion, fitted by the training module and stored with the weights), as
    VOCA initialises its output layer with PCA components; None regresses ``V * 3`` offsets directly.

    Args:
        regressor: The regressor over aligned features, with output size ``basis_components or motion_dim``.
        motion_dim: ``V * 3``.
        basis_components: Size of the output basis, or None.
        offset_scale: Metres per unit of the regressor's output.
    """

    def __init__(
        self,
        regressor: FaceFormerRegressor,
        motion_dim: int,
        basis_components: int | None = None,
        offset_scale: float = 0.01,
    ) -> None:
        super().__init__()
        self.regressor = regressor
        self.motion_dim = motion_dim
        self.offset_scale = offset_scale
        if basis_components is not None:
            self.register_buffer("basis", torch.zeros(basis_components, motion_dim))
            self.register_buffer("basis_mean", torch.zeros(motion_dim))
            self.register_buffer("basis_ready", torch.tensor(False))
        else:
            self.basis = None

    def output(self, features: AudioFeatures, num_frames: Tensor, style: Tensor, fps: float) -> Tensor:
        """Regressor output ``[B, T, basis_components or V*3]`` (the space the training loss is computed in)."""
        aligned = interpolate_features(features, num_frames, fps=fps)
        return self.regressor(aligned.x, style, aligned.mask)

    def to_offsets(self, output: Tensor) -> Tensor:
        """Regressor output ``[B, T, out]`` -> offsets ``[B, T, V*3]`` in ``offset_scale`` units."""
        if self.basis is None:
            return output
        return output @ self.basis + self.basis_mean

    def to_coefficients(self, offsets: Tensor) -> Tensor:
        """Offsets ``[B, T, V*3]`` (``offset_scale`` units) -> basis coefficients ``[B, T, n]``."""
        return (offsets - self.basis_mean) @ self.basis.T

    def generate(
        self, features: AudioFeatures, num_frames: Tensor, style: Tensor, sampling: Sampling, fps: float
    ) -> Tensor:
        """Vertex offsets ``[B, T, V*3]`` in metres (``sampling`` is unused: regression is deterministic)."""
        return self.to_offsets(self.output(features, num_frames, style, fps)) * self.offset_scale
