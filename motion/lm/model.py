"""MotionLM: an autoregressive transformer over residual-VQ motion tokens, conditioned on aligned audio.

Sequence layout. Codes ``[B, K, Tq]`` are laid out on a step grid by a :class:`~motion.lm.patterns.Pattern`
(parallel or MusicGen delay). The input of step s is the sum of the K per-codebook embeddings of the tokens
decided at step s - 1 (a learned BOS vector at step 0), plus the conditioning of step s (:meth:`step_input`, one
implementation for the full forward pass and the decoder); K linear heads predict the K tokens of step s.

Audio alignment and look-ahead. Audio arrives already at the token rate (frame q of audio <-> token frame q).
Step s is given a projection of audio frame ``s + lookahead - max_delay`` (a learned pad vector outside the
audio), and causal attention lets it see every earlier step. Codebook k of frame q is predicted at step
``q + delay_k <= q + max_delay``, so every token of frame q sees audio frames ``<= q + lookahead`` and nothing
later: ``lookahead`` is an exact per-frame guarantee. Streaming latency is ``max(lookahead, max_delay - 1)``
token frames (the delay pattern also waits to know that the frames it interleaves exist). With the delay
pattern the coarse codebook of frame q is predicted first and therefore sees audio up to
``q + lookahead - (K - 1)``; give the delay pattern ``lookahead >= K - 1`` for the coarse code to hear its own
frame (the contract default lookahead=2 with K=4 leaves it one frame behind).

Inference. ``generate``, ``generate_pieces`` and ``stream`` share one incremental decoder with a preallocated,
sliding-window KV cache (:mod:`motion.lm.decode`): one transformer step per pattern step, per-step cost independent
of length. Classifier-free guidance batches the conditional and unconditional branches together.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motion.lm import decode
from motion.lm.inputs import MotionLMInputError, check_audio, check_codes, check_config, loss_weights
from motion.lm.kv_cache import KVCache
from motion.lm.outputs import Generation, LMLoss, LMOutput
from motion.lm.patterns import Pattern
from motion.lm.sampling import Sampling
from motion.lm.transformer import CausalBlock, StepTrunk, rope_frequencies, window_mask

__all__ = ["Generation", "LMLoss", "LMOutput", "MotionLM", "MotionLMInputError"]


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
        check_config(d_model, num_heads, lookahead, max_context, num_styles, cfg_dropout, token_corruption)
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
        weights = loss_weights(codebook_weights, num_codebooks)
        if weights is not None:
            self.register_buffer("codebook_weights", weights, persistent=False)
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
    # One implementation of the step inputs, used by the full forward pass and by the decoding session alike:
    # input of step s = embedding of the tokens of step s - 1 (BOS at step 0) + conditioning of step s.

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

    def condition(self, audio: Tensor, style_vec: Tensor) -> Tensor:
        """Conditioning of audio frames: projected audio plus style.

        Args:
            audio: ``[B, n, Da]`` audio features at the token rate (frames are independent: any chunk).
            style_vec: ``[B, D]`` from :meth:`style_vector`.

        Returns:
            ``[B, n, D]``; frame q conditions step ``q - audio_shift``.
        """
        return self.audio_proj(audio) + style_vec[:, None]

    def pad_condition(self, style_vec: Tensor) -> Tensor:
        """Conditioning ``[B, D]`` of a step whose audio frame lies outside the audio: learned pad plus style."""
        return self.audio_pad + style_vec

    def null_condition(self, batch: int) -> Tensor:
        """Conditioning ``[B, D]`` of the unconditional branch (classifier-free guidance): the learned null."""
        return self.null_cond.expand(batch, -1)

    def conditioning(
        self,
        audio: Tensor,
        style_vec: Tensor,
        num_steps: int,
        lengths: Tensor | None = None,
        drop: Tensor | None = None,
    ) -> Tensor:
        """Conditioning of every step: audio frame ``s + audio_shift`` (or the pad) plus style.

        Args:
            audio: ``[B, Tq, Da]`` audio features at the token rate.
            style_vec: ``[B, D]`` from :meth:`style_vector`.
            num_steps: Steps S.
            lengths: Optional ``[B]`` valid audio frames (right padding); frames past them read the pad.
            drop: Optional ``[B]`` bool, True where the null condition replaces audio and style.

        Returns:
            ``[B, S, D]``.
        """
        b, tq, _ = audio.shape
        feat = self.condition(audio, style_vec)
        frame = torch.arange(num_steps, device=audio.device) + self.audio_shift
        limit = lengths[:, None] if lengths is not None else tq
        valid = (frame >= 0)[None] & (frame[None] < limit)
        gathered = feat[:, frame.clamp(0, max(tq - 1, 0))]
        cond = torch.where(valid[..., None], gathered, self.pad_condition(style_vec)[:, None])
        if drop is not None:
            cond = torch.where(drop[:, None, None], self.null_cond, cond)
        return cond

    def _embed_tokens(self, tokens: Tensor) -> Tensor:
        """Sum over codebooks of the embeddings of ``tokens [..., K]`` (ids in ``[0, C]``) -> ``[..., D]``."""
        idx = (tokens + self.token_offsets).reshape(-1, self.num_codebooks)
        return F.embedding_bag(idx, self.token_emb.weight, mode="sum").view(*tokens.shape[:-1], self.d_model)

    def step_input(self, prev: Tensor | None, cond: Tensor) -> Tensor:
        """Transformer input of steps: the previous step's tokens, embedded and summed over codebooks, plus cond.

        Args:
            prev: ``[..., K]`` tokens of the step before each step (C where that step holds no code of codebook
                k), or None for step 0, which reads the learned BOS vector instead.
            cond: ``[..., D]`` conditioning of each step (:meth:`condition`, :meth:`pad_condition`,
                :meth:`null_condition`, :meth:`conditioning`), broadcast against the token embeddings.

        Returns:
            ``[..., D]``.
        """
        return (self.bos if prev is None else self._embed_tokens(prev)) + cond

    def step_inputs(self, sequence: Tensor, cond: Tensor) -> Tensor:
        """Inputs ``[B, S, D]`` of all steps of a step sequence ``[B, K, S]`` with conditioning ``[B, S, D]``."""
        first = self.step_input(None, cond[:, :1])
        rest = self.step_input(sequence[:, :, :-1].transpose(1, 2), cond[:, 1:])
        return torch.cat([first, rest], dim=1)

    # ---------------------------------------------------------------- transformer

    def trunk(self, x: Tensor) -> Tensor:
        """Causal (sliding-window) transformer over step inputs ``[B, S, D]`` -> logits ``[B, K, S, C]``."""
        b, s, _ = x.shape
        freqs = rope_frequencies(self.head_dim, 0, s, x.device)
        mask = window_mask(s, self.max_context, x.device)
        for block in self.blocks:
            x = block(x, freqs, mask)
        logits = self.heads(self.out_norm(x)).view(b, s, self.num_codebooks, self.codebook_size)
        return logits.permute(0, 2, 1, 3)

    def new_cache(self, rows: int, capacity: int) -> KVCache:
        """An empty KV cache for :meth:`step_trunk`: ``rows`` sequences, ``capacity`` positions per layer."""
        w = self.token_emb.weight
        return KVCache(len(self.blocks), rows, self.num_heads, self.head_dim, capacity, w.dtype, w.device)

    def step_trunk(self) -> StepTrunk:
        """:meth:`trunk` in its one-step form, prepared once per decoding session (see :class:`StepTrunk`)."""
        return StepTrunk.prepare(self.blocks, self.out_norm, self.heads, self.num_codebooks)

    # ---------------------------------------------------------------- training

    def _prepare(
        self, codes: Tensor, audio: Tensor, style: Tensor, mask: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Validate inputs; returns (codes with padded frames set to C, audio, style vector, lengths)."""
        check_audio(audio, self.audio_dim)
        codes, lengths = check_codes(codes, audio, mask, self.num_codebooks, self.codebook_size)
        style_vec = self.style_vector(style)
        if style_vec.shape[0] != codes.shape[0]:
            raise MotionLMInputError(
                f"style has batch {style_vec.shape[0]}, codes have batch {codes.shape[0]}."
            )
        return codes, audio.to(self.bos.dtype), style_vec, lengths

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
        cond = self.conditioning(audio, style_vec, sequence.shape[-1], lengths, drop)
        inputs = sequence
        if self.training and self.token_corruption > 0:
            noise = torch.randint_like(sequence, self.codebook_size)
            flip = (torch.rand(sequence.shape, device=sequence.device) < self.token_corruption) & valid
            inputs = torch.where(flip, noise, sequence)
        x = self.in_drop(self.step_inputs(inputs, cond))
        return LMOutput(self.trunk(x), valid), sequence

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

    def loss(self, codes: Tensor, audio: Tensor, style: Tensor, mask: Tensor | None = None) -> LMLoss:
        """Teacher-forced cross-entropy over valid positions (CFG dropout applies in training mode).

        Args:
            codes: ``[B, K, Tq]`` long codes in ``[0, C)``.
            audio: ``[B, Tq, Da]`` aligned audio features.
            style: ``[B]`` long ids or ``[B, num_styles]`` weights.
            mask: Optional ``[B, Tq]`` bool valid frames (right padding).

        Returns:
            ``LMLoss(total, per_codebook [K])``: the (codebook-weighted) mean over all valid tokens, and each
            codebook's unweighted mean.
        """
        out, sequence = self._forward(codes, audio, style, mask, None)
        return LMLoss.of(out.logits, sequence, self.codebook_weights)

    # ---------------------------------------------------------------- inference

    @torch.no_grad()
    def generate(
        self,
        audio: Tensor,
        style: Tensor,
        num_frames: int | None = None,
        sampling: Sampling = Sampling(),
        return_probs: bool = False,
    ) -> Generation:
        """Generate codes for the whole audio (inference behaviour whatever the module's mode).

        Args:
            audio: ``[B, Tq, Da]`` audio features at the token rate.
            style: ``[B]`` long ids or ``[B, num_styles]`` weights.
            num_frames: Token frames to generate (default and maximum: ``audio.shape[1]``).
            sampling: Token choice (temperature 0: greedy), guidance and seed; sampled decoding draws from
                ``sampling.generators(B, audio.device)``, fresh generators per call, one per sequence.
            return_probs: Also return each token's predictive distribution (:meth:`Sampling.probabilities` of
                the guided logits it was chosen from), conditioned on the tokens generated before it.

        Returns:
            ``Generation(codes [B, K, Tq], probs [B, K, Tq, C] or None)``.
        """
        return decode.generate(self, audio, style, num_frames, sampling, return_probs)

    def generate_pieces(self, audio: Tensor, style: Tensor, num_frames: int | None = None,
                        sampling: Sampling = Sampling(), return_probs: bool = False,
                        piece_frames: int = 256) -> Iterator[Generation]:  # fmt: skip
        """:meth:`generate`'s steps and draws, its frames yielded ``piece_frames`` at a time (they concatenate to its
        codes and probabilities); token and distribution buffers stay bounded by ``piece_frames``."""
        return decode.generate_pieces(self, audio, style, num_frames, sampling, return_probs, piece_frames)

    def stream(
        self,
        audio_chunks: Iterable[Tensor],
        style: Tensor,
        sampling: Sampling = Sampling(),
        return_probs: bool = False,
    ) -> Iterator[Generation]:
        """Generate while audio arrives; yields the frames ``[B, K, m]`` as soon as they are complete.

        A frame is yielded right after the step that completes it, which can run once audio up to
        ``q + max(lookahead, max_delay - 1)`` has arrived (the delay pattern also needs to know that the
        frames it interleaves exist). When ``audio_chunks`` ends the remaining frames are flushed. The
        concatenated yields equal :meth:`generate` on the concatenated audio with the same ``sampling`` (same
        seed: the same draws in the same order).

        Args:
            audio_chunks: Iterable of ``[B, n_i, Da]`` audio features at the token rate (any n_i >= 0).
            style: ``[B]`` long ids or ``[B, num_styles]`` weights.
            sampling: As in :meth:`generate`.
            return_probs: As in :meth:`generate`.

        Returns:
            Iterator of ``Generation(codes [B, K, m], probs [B, K, m, C] or None)``, m >= 1.
        """
        return decode.stream(self, audio_chunks, style, sampling, return_probs)

    @torch.no_grad()
    def forward_cached(self, codes: Tensor, audio: Tensor, style: Tensor) -> LMOutput:
        """Teacher-forced logits computed step by step through the KV cache (the decoder ``generate`` uses); equals
        :meth:`forward` in eval mode up to float rounding (shapes as there, no padding mask), to verify the decoder."""
        codes, audio, _, _ = self._prepare(codes, audio, style, None)
        sequence, valid = self.pattern.build(codes)
        return LMOutput(decode.teacher_forced_logits(self, sequence, audio, style), valid)
