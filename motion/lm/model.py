"""MotionLM: an autoregressive transformer over residual-VQ motion tokens, conditioned on aligned audio.

Sequence layout. Codes ``[B, K, Tq]`` are laid out on a step grid by a :class:`~motion.lm.patterns.Pattern`
(parallel or MusicGen delay). The input of step s is the sum of the K per-codebook embeddings of the tokens
decided at step s - 1 (a learned BOS vector at step 0), plus the conditioning of step s; K linear heads predict
the K tokens of step s.

Audio alignment and look-ahead. Audio arrives already at the token rate (frame q of audio <-> token frame q).
Step s is given a projection of audio frame ``s + lookahead - max_delay`` (a learned pad vector outside the
audio), and causal attention lets it see every earlier step. Codebook k of frame q is predicted at step
``q + delay_k <= q + max_delay``, so every token of frame q sees audio frames ``<= q + lookahead`` and nothing
later: ``lookahead`` is an exact per-frame guarantee. Streaming latency is ``max(lookahead, max_delay - 1)``
token frames (the delay pattern also waits to know that the frames it interleaves exist). With the delay
pattern the coarse codebook of frame q is predicted first and therefore sees audio up to
``q + lookahead - (K - 1)``; give the delay pattern ``lookahead >= K - 1`` for the coarse code to hear its own
frame (the contract default lookahead=2 with K=4 leaves it one frame behind).

Inference. ``generate`` and ``stream`` share one incremental decoder with a preallocated, sliding-window KV
cache (:mod:`motion.lm.kv_cache`): one transformer step per pattern step, memory and per-step cost independent
of length. Classifier-free guidance batches the conditional and unconditional branches together.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motion.lm.kv_cache import (
    CausalBlock,
    DecodeSession,
    KVCache,
    SamplingArgs,
    StepWeights,
    rope_frequencies,
    window_mask,
)
from motion.lm.patterns import Pattern
from motion.lm.sampling import check_sampling


def _normal_tensors(out: Tensor | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
    """Clones of inference-mode results (a tensor or a tuple of them): normal tensors, usable with autograd."""
    return tuple(t.clone() for t in out) if isinstance(out, tuple) else out.clone()


class MotionLMInputError(ValueError):
    """Raised when codes, audio, style or mask given to MotionLM have the wrong shape, type or range."""


@dataclass(frozen=True)
class LMOutput:
    """Teacher-forced predictions.

    Attributes:
        logits: ``[B, K, S, C]`` scores of the token at each (codebook, step).
        mask: ``[K, S]`` bool valid positions (``[B, K, S]`` when a frame mask was given).
    """

    logits: Tensor
    mask: Tensor


class MotionLM(nn.Module):
    """Autoregressive generator of residual-VQ motion codes from token-rate audio features.

    Args:
        num_codebooks: Residual codebooks K.
        codebook_size: Codes per codebook C.
        audio_dim: Size Da of the aligned audio features.
        d_model: Transformer width D.
        num_layers: Transformer blocks.
        num_heads: Attention heads (``d_model / num_heads`` must be even: rotary positions).
        ff_dim: Feed-forward hidden size.
        dropout: Dropout in training.
        pattern: Codebook interleaving, ``"delay"`` or ``"parallel"``.
        num_styles: Speaking styles (training speakers) of the style embedding.
        lookahead: Audio frames after token frame q that any token of frame q may depend on (exact bound).
        cfg_dropout: Training probability, per sample, of replacing audio and style by the learned null
            condition, so the same model serves as the unconditional branch of classifier-free guidance.
        token_corruption: Training probability, per input token, of replacing the previous-step token the
            model reads by a uniformly random code (targets are untouched). Counters exposure bias: at
            inference the model reads its own, imperfect tokens, and a model that only ever saw true tokens
            learns to copy them and to ignore the audio. 0 disables it.
        codebook_weights: Relative weight of each codebook's cross-entropy in the training loss (K non-negative
            numbers, normalised to mean 1); None weighs every token alike. The logged per-codebook losses are
            unweighted.
        max_context: Attention window in steps; the KV cache holds this many positions and longer sequences
            slide, so generation cost is linear in length. Positions are rotary (relative), hence unbounded.
        decode_threads: Intra-op CPU threads while decoding (set process-wide for the duration of each
            ``generate`` call or streamed frame, then restored); 0 keeps the process setting. A step works on
            a few [rows, D] vectors, which gain nothing from threads, while OpenMP barriers cost milliseconds per
            op when cores are shared; raise it only for large generation batches.
    """

    def __init__(
        self,
        num_codebooks: int = 4,
        codebook_size: int = 256,
        audio_dim: int = 128,
        d_model: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        ff_dim: int = 1024,
        dropout: float = 0.1,
        pattern: str = "delay",
        num_styles: int = 8,
        lookahead: int = 2,
        cfg_dropout: float = 0.1,
        token_corruption: float = 0.0,
        codebook_weights: list[float] | None = None,
        max_context: int = 2048,
        decode_threads: int = 1,
    ) -> None:
        super().__init__()
        if d_model % num_heads or (d_model // num_heads) % 2:
            raise ValueError(f"d_model={d_model} / num_heads={num_heads} must be an even integer (rotary).")
        if lookahead < 0:
            raise ValueError(f"lookahead={lookahead} must be >= 0 audio frames.")
        if max_context < 1:
            raise ValueError(f"max_context={max_context} must be at least 1 step.")
        if num_styles < 1:
            raise ValueError(f"num_styles={num_styles} must be at least 1.")
        if not 0.0 <= cfg_dropout <= 1.0:
            raise ValueError(f"cfg_dropout={cfg_dropout} must be a probability in [0, 1].")
        if not 0.0 <= token_corruption < 1.0:
            raise ValueError(f"token_corruption={token_corruption} must be a probability in [0, 1).")
        self.pattern = Pattern(pattern, num_codebooks, codebook_size)
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.audio_dim = audio_dim
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.num_styles = num_styles
        self.lookahead = lookahead
        self.cfg_dropout = cfg_dropout
        self.token_corruption = token_corruption
        if codebook_weights is not None:
            if (
                len(codebook_weights) != num_codebooks
                or min(codebook_weights) < 0
                or max(codebook_weights) <= 0
            ):
                raise ValueError(
                    f"codebook_weights={list(codebook_weights)} must hold {num_codebooks} non-negative weights, "
                    "not all zero."
                )
            weights = torch.tensor([float(w) for w in codebook_weights])
            self.register_buffer("codebook_weights", weights / weights.mean(), persistent=False)
        else:
            self.codebook_weights = None
        self.max_context = max_context
        self.decode_threads = decode_threads
        # Step s is conditioned on audio frame s + audio_shift (see the module docstring).
        self.audio_shift = lookahead - self.pattern.max_delay
        # One table for all codebooks (C codes + the special "nothing here" id each), read by embedding_bag.
        self.token_emb = nn.Embedding(num_codebooks * (codebook_size + 1), d_model)
        self.register_buffer(
            "token_offsets", torch.arange(num_codebooks) * (codebook_size + 1), persistent=False
        )
        self.bos = nn.Parameter(torch.zeros(d_model))
        self.audio_proj = nn.Sequential(
            nn.Linear(audio_dim, d_model), nn.GELU(approximate="tanh"), nn.Linear(d_model, d_model)
        )
        self.audio_pad = nn.Parameter(torch.zeros(d_model))
        self.style_emb = nn.Embedding(num_styles, d_model)
        self.null_cond = nn.Parameter(torch.zeros(d_model))
        self.in_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            CausalBlock(d_model, num_heads, ff_dim, dropout) for _ in range(num_layers)
        )
        self.out_norm = nn.LayerNorm(d_model)
        self.heads = nn.Linear(d_model, num_codebooks * codebook_size)
        self._init_weights(num_layers)

    def _init_weights(self, num_layers: int) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        for block in self.blocks:  # residual projections scaled down so depth does not blow up the stream
            nn.init.normal_(block.proj.weight, std=0.02 / (2 * num_layers) ** 0.5)
            nn.init.normal_(block.ff2.weight, std=0.02 / (2 * num_layers) ** 0.5)
        for p in (self.bos, self.audio_pad, self.null_cond):
            nn.init.normal_(p, std=0.02)

    # ---------------------------------------------------------------- inputs

    def _check_audio(self, audio: Tensor, name: str) -> Tensor:
        if audio.dim() != 3 or audio.shape[-1] != self.audio_dim or not audio.is_floating_point():
            raise MotionLMInputError(
                f"{name} must be a float tensor [B, Tq, audio_dim={self.audio_dim}] at the token rate; "
                f"got {tuple(audio.shape)} {audio.dtype}."
            )
        return audio.to(self.bos.dtype)

    def style_vector(self, style: Tensor) -> Tensor:
        """Style embedding ``[B, D]`` from ids ``[B]`` (long) or mixing weights ``[B, num_styles]``."""
        if style.dim() == 1 and not style.is_floating_point():
            if style.numel() and (int(style.min()) < 0 or int(style.max()) >= self.num_styles):
                raise MotionLMInputError(f"style ids must lie in [0, num_styles={self.num_styles}).")
            return self.style_emb(style)
        if style.dim() == 2 and style.shape[1] == self.num_styles:
            return style.to(self.style_emb.weight.dtype) @ self.style_emb.weight
        raise MotionLMInputError(
            f"style must be [B] long ids or [B, num_styles={self.num_styles}] weights; got "
            f"{tuple(style.shape)} {style.dtype}."
        )

    def _embed_inputs(self, sequence: Tensor) -> Tensor:
        """Step inputs ``[B, S, D]`` from a step sequence ``[B, K, S]``: BOS, then the tokens of step s - 1."""
        b, k, s = sequence.shape
        prev = (sequence[:, :, :-1] + self.token_offsets[:, None]).transpose(1, 2).reshape(-1, k)
        emb = F.embedding_bag(prev, self.token_emb.weight, mode="sum").view(b, s - 1, self.d_model)
        return torch.cat([self.bos.expand(b, 1, self.d_model), emb], dim=1)

    def _conditioning(
        self, audio: Tensor, style_vec: Tensor, num_steps: int, lengths: Tensor | None, drop: Tensor | None
    ) -> Tensor:
        """Per-step conditioning ``[B, S, D]``: audio frame ``s + audio_shift`` (or the pad) plus style."""
        b, tq, _ = audio.shape
        feat = self.audio_proj(audio) + style_vec[:, None]  # same grouping as DecodeSession.feed
        frame = torch.arange(num_steps, device=audio.device) + self.audio_shift
        limit = lengths[:, None] if lengths is not None else tq
        valid = (frame >= 0)[None] & (frame[None] < limit)
        gathered = feat[:, frame.clamp(0, max(tq - 1, 0))]
        cond = torch.where(valid[..., None], gathered, (self.audio_pad + style_vec)[:, None])
        if drop is not None:
            cond = torch.where(drop[:, None, None], self.null_cond, cond)
        return cond

    def _trunk(self, x: Tensor) -> Tensor:
        """Causal (sliding-window) transformer over step inputs ``[B, S, D]`` -> logits ``[B, K, S, C]``."""
        b, s, _ = x.shape
        freqs = rope_frequencies(self.head_dim, 0, s, x.device)
        mask = window_mask(s, self.max_context, x.device)
        for block in self.blocks:
            x = block(x, freqs, mask)
        logits = self.heads(self.out_norm(x)).view(b, s, self.num_codebooks, self.codebook_size)
        return logits.permute(0, 2, 1, 3)

    def step_weights(self) -> tuple[list[StepWeights], Tensor, Tensor, Tensor, Tensor]:
        """Parameters prepared for :meth:`step_logits` (once per decoding session; see ``StepWeights``)."""
        norm = self.out_norm
        return (
            [block.step_weights() for block in self.blocks],
            norm.weight.detach(),
            norm.bias.detach(),
            self.heads.weight.detach().t().contiguous(),
            self.heads.bias.detach(),
        )

    def step_logits(
        self,
        x: Tensor,
        freqs: Tensor,
        cache: KVCache,
        weights: tuple[list[StepWeights], Tensor, Tensor, Tensor, Tensor] | None = None,
    ) -> Tensor:
        """One cached step: inputs ``[N, D]`` -> logits ``[N, K, C]`` (used by the decoding session).

        ``weights`` is :meth:`step_weights`, prepared once per session; None prepares them now.
        """
        blocks, norm_weight, norm_bias, heads, heads_bias = weights or self.step_weights()
        for i, block in enumerate(blocks):
            x = block.step(x, freqs, cache, i)
        h = F.layer_norm(x, (self.d_model,), norm_weight, norm_bias, self.out_norm.eps)
        return torch.addmm(heads_bias, h, heads).view(x.shape[0], self.num_codebooks, self.codebook_size)

    # ---------------------------------------------------------------- training

    def _prepare(
        self, codes: Tensor, audio: Tensor, style: Tensor, mask: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Validate inputs; returns (codes with padded frames set to C, audio, style vector, lengths)."""
        if codes.dim() != 3 or codes.shape[1] != self.num_codebooks or codes.is_floating_point():
            raise MotionLMInputError(
                f"codes must be integer [B, K={self.num_codebooks}, Tq]; got {tuple(codes.shape)} {codes.dtype}."
            )
        audio = self._check_audio(audio, "audio")
        b, _, tq = codes.shape
        if audio.shape[:2] != (b, tq) or tq == 0:
            raise MotionLMInputError(
                f"audio {tuple(audio.shape)} must have the batch and the (non-zero) frame count of codes "
                f"{tuple(codes.shape)}; align audio to the token rate first."
            )
        lengths = None
        if mask is not None:
            if mask.shape != (b, tq) or mask.dtype != torch.bool:
                raise MotionLMInputError(f"mask must be bool [B={b}, Tq={tq}]; got {tuple(mask.shape)}.")
            lengths = mask.sum(1)
            if not torch.equal(mask, torch.arange(tq, device=mask.device)[None] < lengths[:, None]):
                raise MotionLMInputError("mask must mark a prefix of each sequence (right padding only).")
        checked = codes if mask is None else codes.masked_fill(~mask[:, None, :], 0)
        if int(checked.min()) < 0 or int(checked.max()) >= self.codebook_size:
            raise MotionLMInputError(f"codes must lie in [0, codebook_size={self.codebook_size}).")
        if mask is not None:  # padded frames become "nothing here", exactly as past the end in generation
            codes = codes.masked_fill(~mask[:, None, :], self.codebook_size)
        style_vec = self.style_vector(style)
        if style_vec.shape[0] != b:
            raise MotionLMInputError(f"style has batch {style_vec.shape[0]}, codes have batch {b}.")
        return codes, audio, style_vec, lengths

    def _forward(
        self, codes: Tensor, audio: Tensor, style: Tensor, mask: Tensor | None, drop_condition: Tensor | None
    ) -> tuple[LMOutput, Tensor]:
        codes, audio, style_vec, lengths = self._prepare(codes, audio, style, mask)
        sequence, valid = self.pattern.build(codes)
        if mask is not None:
            valid = sequence != self.codebook_size
        drop = drop_condition
        if drop is None and self.training and self.cfg_dropout > 0:
            drop = torch.rand(codes.shape[0], device=codes.device) < self.cfg_dropout
        cond = self._conditioning(audio, style_vec, sequence.shape[-1], lengths, drop)
        inputs = sequence
        if self.training and self.token_corruption > 0:
            noise = torch.randint_like(sequence, self.codebook_size)
            flip = (torch.rand(sequence.shape, device=sequence.device) < self.token_corruption) & valid
            inputs = torch.where(flip, noise, sequence)
        x = self.in_drop(self._embed_inputs(inputs) + cond)
        return LMOutput(self._trunk(x), valid), sequence

    def forward(
        self,
        codes: Tensor,
        audio: Tensor,
        style: Tensor,
        mask: Tensor | None = None,
        drop_condition: Tensor | None = None,
    ) -> LMOutput:
        """Teacher-forced logits of every (codebook, step) position.

        Args:
            codes: ``[B, K, Tq]`` long codes in ``[0, C)`` (anything on padded frames).
            audio: ``[B, Tq, Da]`` audio features aligned to the token rate.
            style: ``[B]`` long style ids or ``[B, num_styles]`` style weights.
            mask: Optional ``[B, Tq]`` bool, True on valid frames (a prefix: right padding).
            drop_condition: Optional ``[B]`` bool, True to use the null condition (the unconditional branch);
                None draws it with probability ``cfg_dropout`` in training and never in eval.

        Returns:
            ``LMOutput(logits [B, K, S, C], mask)``.
        """
        return self._forward(codes, audio, style, mask, drop_condition)[0]

    def loss(
        self, codes: Tensor, audio: Tensor, style: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Teacher-forced cross-entropy over valid positions (CFG dropout applies in training mode).

        Args:
            codes: ``[B, K, Tq]`` long codes in ``[0, C)``.
            audio: ``[B, Tq, Da]`` aligned audio features.
            style: ``[B]`` long ids or ``[B, num_styles]`` weights.
            mask: Optional ``[B, Tq]`` bool valid frames (right padding).

        Returns:
            ``(mean over all valid tokens, per-codebook mean [K])``.
        """
        out, sequence = self._forward(codes, audio, style, mask, None)
        c = self.codebook_size
        ce = F.cross_entropy(
            out.logits.reshape(-1, c), sequence.reshape(-1), ignore_index=c, reduction="none"
        )
        ce = ce.view(sequence.shape)
        valid = (sequence != c).to(ce.dtype)
        per_codebook = (ce * valid).sum((0, 2)) / valid.sum((0, 2)).clamp_min(1)
        if self.codebook_weights is not None:  # weighted per token: codebook k's tokens count w_k times
            valid = valid * self.codebook_weights[None, :, None]
        return (ce * valid).sum() / valid.sum().clamp_min(1), per_codebook

    # ---------------------------------------------------------------- inference

    @torch.no_grad()
    def generate(
        self,
        audio: Tensor,
        style: Tensor,
        num_frames: int | None = None,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 0.0,
        cfg_scale: float = 1.0,
        greedy: bool = False,
        generator: torch.Generator | None = None,
        return_probs: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Generate codes for the whole audio (inference behaviour whatever the module's mode).

        Args:
            audio: ``[B, Tq, Da]`` audio features at the token rate.
            style: ``[B]`` long ids or ``[B, num_styles]`` weights.
            num_frames: Token frames to generate (default and maximum: ``audio.shape[1]``).
            temperature: Softmax temperature; 0 means greedy.
            top_k: Sample among the k most likely codes (0: all).
            top_p: Nucleus mass (0 or 1: all).
            cfg_scale: Classifier-free guidance, ``u + cfg_scale * (c - u)``; 1 runs the conditional branch only.
            greedy: Argmax decoding.
            generator: Seeded generator for reproducible sampling.
            return_probs: Also return each token's predictive distribution: the softmax of the (guided) logits
                it was chosen from, at ``temperature`` when sampling and at 1 when decoding greedily, before any
                top-k / top-p filtering. Each distribution is conditioned on the tokens generated before it.

        Returns:
            Codes ``[B, K, Tq]`` long in ``[0, C)``; with ``return_probs`` also ``[B, K, Tq, C]`` probabilities.
        """
        sampling = SamplingArgs(temperature, top_k, top_p, cfg_scale, greedy, generator)
        check_sampling(temperature, top_k, top_p, cfg_scale)
        audio = self._check_audio(audio, "audio")
        tq = audio.shape[1] if num_frames is None else num_frames
        if not 0 <= tq <= audio.shape[1]:
            raise MotionLMInputError(
                f"num_frames={num_frames} must be in [0, {audio.shape[1]}] (audio frames)."
            )
        steps = self.pattern.num_steps(tq)
        b, k = audio.shape[0], self.num_codebooks
        with torch.inference_mode():
            capacity = max(1, min(self.max_context, steps))
            session = DecodeSession(self, style, sampling, capacity, keep_probs=return_probs)
            if session.batch != b:
                raise MotionLMInputError(f"style has batch {session.batch}, audio has batch {b}.")
            session.feed(audio[:, :tq])
            session.end()
            out = session.run(stop_at_frame=False)
        if out is None:
            codes = torch.zeros(b, k, 0, dtype=torch.long, device=audio.device)
            out = (codes, audio.new_zeros(b, k, 0, self.codebook_size)) if return_probs else codes
        # Clones made outside inference mode are normal tensors, usable with autograd.
        return _normal_tensors(out)

    def stream(
        self,
        audio_chunks: Iterable[Tensor],
        style: Tensor,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 0.0,
        cfg_scale: float = 1.0,
        greedy: bool = False,
        generator: torch.Generator | None = None,
        return_probs: bool = False,
    ) -> Iterator[Tensor] | Iterator[tuple[Tensor, Tensor]]:
        """Generate while audio arrives; yields codes ``[B, K, m]`` of frames as soon as they are complete.

        A frame is yielded right after the step that completes it, which can run once audio up to
        ``q + max(lookahead, max_delay - 1)`` has arrived (the delay pattern also needs to know that the
        frames it interleaves exist). When ``audio_chunks`` ends the remaining frames are flushed. With greedy
        decoding the concatenated yields equal ``generate`` on the concatenated audio.

        Args:
            audio_chunks: Iterable of ``[B, n_i, Da]`` audio features at the token rate (any n_i >= 0).
            style: ``[B]`` long ids or ``[B, num_styles]`` weights.
            temperature: As in :meth:`generate`.
            top_k: As in :meth:`generate`.
            top_p: As in :meth:`generate`.
            cfg_scale: As in :meth:`generate`.
            greedy: As in :meth:`generate`.
            generator: As in :meth:`generate`.
            return_probs: Yield ``(codes, probs [B, K, m, C])`` pairs, as :meth:`generate` returns them.
        """
        check_sampling(temperature, top_k, top_p, cfg_scale)
        sampling = SamplingArgs(temperature, top_k, top_p, cfg_scale, greedy, generator)
        with torch.inference_mode():
            session = DecodeSession(self, style, sampling, self.max_context, keep_probs=return_probs)
        return self._stream(session, audio_chunks)

    def _stream(self, session: DecodeSession, audio_chunks: Iterable[Tensor]) -> Iterator:
        for chunk in audio_chunks:
            chunk = self._check_audio(chunk, "audio chunk")
            if chunk.shape[0] != session.batch:
                raise MotionLMInputError(
                    f"audio chunk has batch {chunk.shape[0]}, style has {session.batch}."
                )
            with torch.inference_mode():
                session.feed(chunk)
            while (out := session.run(stop_at_frame=True)) is not None:
                yield _normal_tensors(out)
        with torch.inference_mode():
            session.end()
        while (out := session.run(stop_at_frame=True)) is not None:
            yield _normal_tensors(out)

    @torch.no_grad()
    def forward_cached(self, codes: Tensor, audio: Tensor, style: Tensor) -> LMOutput:
        """Teacher-forced logits computed step by step through the KV cache (the decoder ``generate`` uses).

        Equals :meth:`forward` in eval mode up to float rounding; exists to verify the incremental decoder.
        Shapes as in :meth:`forward` (no padding mask).
        """
        codes, audio, _, _ = self._prepare(codes, audio, style, None)
        sequence, valid = self.pattern.build(codes)
        b, k, s = sequence.shape
        with torch.inference_mode():
            record = torch.empty(b, k, s, self.codebook_size, dtype=self.bos.dtype, device=codes.device)
            sampling = SamplingArgs(1.0, 0, 0.0, 1.0, True, None)
            session = DecodeSession(self, style, sampling, min(self.max_context, s), sequence, record)
            session.feed(audio)
            session.end()
            session.run(stop_at_frame=False)
        return LMOutput(record.clone(), valid)
