"""Preallocated sliding-window KV cache, the causal block that reads and writes it, and the decoding session.

The block has two entry points that compute the same function: ``forward`` runs a whole sequence at once
(training, scoring) and ``step`` runs one position against a :class:`KVCache` (generation). Positions are rotary
(RoPE), applied to keys before they are cached, so attention only depends on distances and a ring buffer of the
last ``capacity`` keys can be read in any order: once full, the cache wraps around in place and per-step cost
stays flat however long the sequence runs. ``forward`` applies the same window as a mask, so both paths agree
for any length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motion.lm.sampling import sample_tokens


def rope_frequencies(
    head_dim: int, start: int, length: int, device: torch.device | str | None = None
) -> Tensor:
    """Rotary phases ``exp(i * pos * theta_j)`` for positions ``start .. start + length - 1``.

    Angles are formed in float64 so that positions in the millions (hours of streaming) keep their precision.

    Returns:
        ``[length, head_dim // 2]`` complex64.
    """
    inv_freq = torch.exp(
        torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) * (-math.log(10000.0) / head_dim)
    )
    pos = torch.arange(start, start + length, dtype=torch.float64, device=device)
    angles = pos[:, None] * inv_freq[None, :]
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64)


def apply_rope(x: Tensor, freqs: Tensor) -> Tensor:
    """Rotate consecutive feature pairs of ``x [..., Dh]`` by ``freqs`` (complex, broadcast to ``[..., Dh/2]``)."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * freqs).flatten(-2).type_as(x)


def window_mask(length: int, window: int, device: torch.device | str | None = None) -> Tensor | None:
    """``[S, S]`` bool, True where query i may attend key j (``i - window < j <= i``); None if plain causal."""
    if length <= window:
        return None
    i = torch.arange(length, device=device)
    delta = i[:, None] - i[None, :]
    return (delta >= 0) & (delta < window)


class KVCache:
    """Keys and values of the last ``capacity`` positions for every layer, allocated once, written in place.

    Args:
        num_layers: Transformer layers.
        batch: Rows decoded together (twice the batch when classifier-free guidance runs both branches).
        num_heads: Attention heads H.
        head_dim: Per-head size Dh.
        capacity: Positions kept (the attention window).
        dtype: Storage dtype.
        device: Storage device.
    """

    def __init__(
        self,
        num_layers: int,
        batch: int,
        num_heads: int,
        head_dim: int,
        capacity: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"KV cache capacity={capacity} must be at least 1.")
        shape = (num_layers, batch, num_heads, capacity, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.capacity = capacity
        self.position = 0  # absolute position of the token being written
        # Per-layer views made once, so a step only slices along the position axis.
        self._k = list(self.keys.unbind(0))
        self._v = list(self.values.unbind(0))

    def update(self, layer: int, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``key``/``value`` ``[N, H, Dh]`` at the current position; return the live window ``[N, H, n, Dh]``.

        The window is returned in slot order, not time order; attention is permutation invariant over keys and
        RoPE already encodes each key's position, so that is exact.
        """
        slot = self.position % self.capacity
        k, v = self._k[layer], self._v[layer]
        k.select(2, slot).copy_(key)
        v.select(2, slot).copy_(value)
        if self.position + 1 >= self.capacity:
            return k, v
        n = self.position + 1
        return k[:, :, :n], v[:, :, :n]

    def advance(self) -> None:
        """Move to the next position (call once per step, after every layer has been updated)."""
        self.position += 1


class CausalBlock(nn.Module):
    """Pre-norm transformer block: rotary causal self-attention (fused SDPA) and a GELU feed-forward.

    GELU uses the tanh form: the erf form is parallelised by ATen even on a single [1, ff_dim] row, and its
    thread barrier costs milliseconds per step when the cores are shared.

    Args:
        d_model: Width D.
        num_heads: Attention heads H (D / H must be even for RoPE).
        ff_dim: Feed-forward hidden size.
        dropout: Dropout on attention weights and residual branches (training only).
    """

    def __init__(self, d_model: int, num_heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, ff_dim)
        self.ff2 = nn.Linear(ff_dim, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, freqs: Tensor, mask: Tensor | None) -> Tensor:
        """Whole-sequence pass.

        Args:
            x: ``[B, S, D]``.
            freqs: ``[S, Dh/2]`` complex rotary phases of positions ``0..S-1``.
            mask: ``[S, S]`` bool window mask, or None for plain causal attention.

        Returns:
            ``[B, S, D]``.
        """
        b, s, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, s, 3, self.num_heads, self.head_dim)
        qk = apply_rope(qkv[:, :, :2], freqs[:, None, None, :])
        q, k, v = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
        p = self.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=mask is None)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, s, d)))
        return x + self.drop(self.ff2(self.drop(F.gelu(self.ff1(self.norm2(x)), approximate="tanh"))))

    def step_weights(self) -> StepWeights:
        """This block's parameters laid out for :meth:`step` (matrices as contiguous ``[in, out]`` copies)."""
        return StepWeights(
            self.norm1.weight.detach(), self.norm1.bias.detach(), self.norm1.eps,
            self.qkv.weight.detach().t().contiguous(), self.qkv.bias.detach(),
            self.proj.weight.detach().t().contiguous(), self.proj.bias.detach(),
            self.norm2.weight.detach(), self.norm2.bias.detach(), self.norm2.eps,
            self.ff1.weight.detach().t().contiguous(), self.ff1.bias.detach(),
            self.ff2.weight.detach().t().contiguous(), self.ff2.bias.detach(),
            self.num_heads, self.head_dim,
        )  # fmt: skip

    def step(
        self, x: Tensor, freqs: Tensor, cache: KVCache, layer: int, weights: StepWeights | None = None
    ) -> Tensor:
        """One position against the cache (inference: no dropout).

        Args:
            x: ``[N, D]`` input of the current position.
            freqs: ``[Dh/2]`` complex rotary phase of the current position.
            cache: The shared cache; this block owns index ``layer``.
            layer: Index of this block.
            weights: :meth:`step_weights`, prepared once per decoding session; None prepares them now.

        Returns:
            ``[N, D]``.
        """
        return (weights or self.step_weights()).step(x, freqs, cache, layer)


@dataclass(frozen=True)
class StepWeights:
    """A :class:`CausalBlock`'s parameters prepared for one-position decoding, and the step itself.

    A decoding step multiplies one row per sequence by each matrix. On the CPU ``x @ W`` with ``W`` stored
    ``[in, out]`` runs about twice as fast as ``F.linear`` with the ``[out, in]`` parameter, and plain tuple
    fields skip ``nn.Module`` attribute lookups; at one position per step these are most of the cost. The
    tensors are detached views or copies of the parameters at preparation time: prepare again after training.
    """

    norm1_weight: Tensor
    norm1_bias: Tensor
    norm1_eps: float
    qkv: Tensor
    qkv_bias: Tensor
    proj: Tensor
    proj_bias: Tensor
    norm2_weight: Tensor
    norm2_bias: Tensor
    norm2_eps: float
    ff1: Tensor
    ff1_bias: Tensor
    ff2: Tensor
    ff2_bias: Tensor
    num_heads: int
    head_dim: int

    def step(self, x: Tensor, freqs: Tensor, cache: KVCache, layer: int) -> Tensor:
        """The computation of :meth:`CausalBlock.step` (see there)."""
        n, d = x.shape
        heads, head_dim = self.num_heads, self.head_dim
        h = torch.layer_norm(x, (d,), self.norm1_weight, self.norm1_bias, self.norm1_eps)
        qkv = torch.addmm(self.qkv_bias, h, self.qkv)  # [N, 3D]: q | k | v
        qk = apply_rope(qkv[:, : 2 * d].view(n, 2, heads, head_dim), freqs)  # q and k at once
        keys, values = cache.update(layer, qk[:, 1], qkv[:, 2 * d :].view(n, heads, head_dim))
        a = F.scaled_dot_product_attention(qk[:, 0, :, None], keys, values)
        x = torch.addmm(self.proj_bias, a.view(n, d), self.proj).add_(x)
        h = torch.layer_norm(x, (d,), self.norm2_weight, self.norm2_bias, self.norm2_eps)
        h = F.gelu(torch.addmm(self.ff1_bias, h, self.ff1), approximate="tanh")
        return torch.addmm(self.ff2_bias, h, self.ff2).add_(x)


@contextmanager
def intra_op_threads(num_threads: int) -> Iterator[None]:
    """Temporarily set torch's intra-op CPU thread count (process-wide); 0 leaves it as it is."""
    previous = torch.get_num_threads()
    if num_threads <= 0 or num_threads == previous:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class SamplingArgs:
    """How each step's tokens are chosen (see :func:`motion.lm.sampling.sample_tokens`)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.0
    cfg_scale: float = 1.0
    greedy: bool = False
    generator: torch.Generator | None = None


class DecodeSession:
    """Incremental decoding state of a MotionLM: one transformer step per pattern step over a KVCache.

    ``generate`` feeds all audio at once; ``stream`` feeds chunks as they arrive. Both run the same steps on the
    same inputs, which is why streaming equals offline generation. Buffers grow per chunk (amortised), never
    per step, and drop what no future step or yield needs, so streaming memory is bounded.

    Step s may run once (a) its audio frame ``s + audio_shift`` has arrived and (b) frame s - 1 is known to
    exist: the delay pattern feeds the tokens of frames s - 1 - k into step s, and a frame past the end would be
    the special token instead. When the audio has ended both are known for every step.

    Args:
        model: The MotionLM (duck-typed: pattern, audio_shift, blocks, step_weights, step_logits, embeddings).
        style: ``[B]`` ids or ``[B, num_styles]`` weights.
        sampling: Token choice.
        capacity: KV cache positions (the attention window).
        teacher: Optional ``[B, K, S]`` step sequence to feed instead of sampling (teacher forcing).
        record: Optional ``[B, K, S, C]`` buffer that receives every step's logits (guided ones under CFG).
        keep_probs: Keep each step's (guided) logits alongside its tokens, so that :meth:`run` can also return
            the distributions the frames' tokens were chosen from (bounded like the token buffer).
    """

    def __init__(
        self,
        model,
        style: Tensor,
        sampling: SamplingArgs,
        capacity: int,
        teacher: Tensor | None = None,
        record: Tensor | None = None,
        keep_probs: bool = False,
    ) -> None:
        pattern = model.pattern
        self.model = model
        self.sampling = sampling
        self.teacher = teacher
        self.record = record
        self.num_codebooks = pattern.num_codebooks
        self.special_token = pattern.special_token
        self.delays = pattern.delays
        self.max_delay = pattern.max_delay
        self.shift = model.audio_shift
        self.style_vec = model.style_vector(style)
        self.batch = b = self.style_vec.shape[0]
        weight = model.token_emb.weight
        self.weight = weight
        self.pad = model.audio_pad + self.style_vec
        self.bos = model.bos.expand(b, -1)
        self.cfg = teacher is None and sampling.cfg_scale != 1.0
        self.null = model.null_cond.expand(b, -1)
        self.offsets = model.token_offsets
        self.special_ids = model.token_offsets + self.special_token
        self.delay_t = torch.tensor(self.delays, device=weight.device)
        first = model.blocks[0]
        self.head_dim = first.head_dim
        self.weights = model.step_weights()  # prepared once: every step reuses them
        rows = 2 * b if self.cfg else b
        self.cache = KVCache(len(model.blocks), rows, first.num_heads, first.head_dim, capacity, weight.dtype,
                             weight.device)  # fmt: skip
        self.audio = weight.new_zeros(b, 0, weight.shape[1])  # conditioning of frames [audio_start, received)
        self.audio_start = 0
        self.seq = torch.full((b, self.num_codebooks, 0), self.special_token, device=weight.device)
        # Logits of the steps in seq (same extent), when the distributions are wanted.
        self.logits = weight.new_zeros(b, self.num_codebooks, 0, model.codebook_size) if keep_probs else None
        self.seq_start = 0  # step index of seq[..., 0]
        self.rope = rope_frequencies(self.head_dim, 0, 0, weight.device)
        self.rope_start = 0
        self.step = 0  # next step to run
        self.received = 0  # audio frames fed so far
        self.total: int | None = None  # Tq, once the audio has ended
        self.emitted = 0  # frames already returned

    def feed(self, audio: Tensor) -> None:
        """Append audio ``[B, n, Da]`` (call in inference mode)."""
        feat = self.model.audio_proj(audio) + self.style_vec[:, None]
        keep = min(max(self.step + self.shift - self.audio_start, 0), self.audio.shape[1])
        self.audio = torch.cat([self.audio[:, keep:], feat], dim=1)
        self.audio_start += keep
        self.received += audio.shape[1]
        self._reserve(self.received + self.max_delay + 1)

    def end(self) -> None:
        """Mark the end of the audio: Tq is now known and every remaining step can run."""
        self.total = self.received
        self._reserve(self.received + self.max_delay + 1)

    def _reserve(self, end_step: int) -> None:
        """Make the step buffer and rotary table cover steps up to ``end_step`` (doubling, dropping the done)."""
        if end_step > self.seq_start + self.seq.shape[-1]:
            start = max(min(self.emitted, self.step - 1), self.seq_start)
            size = max(2 * (end_step - start), 64) if self.total is None else end_step - start
            seq = torch.full(
                (self.batch, self.num_codebooks, size), self.special_token, device=self.seq.device
            )
            kept = self.seq[:, :, start - self.seq_start :]
            seq[:, :, : kept.shape[-1]] = kept
            if self.logits is not None:
                logits = self.logits.new_zeros(*seq.shape, self.logits.shape[-1])
                logits[:, :, : kept.shape[-1]] = self.logits[:, :, start - self.seq_start :]
                self.logits = logits
            self.seq, self.seq_start = seq, start
        if end_step > self.rope_start + self.rope.shape[0]:
            self.rope = rope_frequencies(self.head_dim, self.step, self.seq.shape[-1], self.seq.device)
            self.rope_start = self.step

    def _runnable(self) -> bool:
        if self.total is not None:
            return self.step < (self.total + self.max_delay if self.total else 0)
        return self.step <= self.received and self.step + self.shift < self.received

    def _complete(self) -> int:
        done = max(self.step - self.max_delay, 0)
        return min(done, self.total if self.total is not None else self.received)

    def run(self, stop_at_frame: bool) -> Tensor | tuple[Tensor, Tensor] | None:
        """Run the steps the audio allows; return codes ``[B, K, m]`` of newly complete frames, or None.

        With ``keep_probs`` the result is ``(codes, probs)``, probs ``[B, K, m, C]``: the softmax of the logits each
        token was chosen from, at the sampling temperature (at 1 for greedy decoding), before top-k / top-p.

        Args:
            stop_at_frame: Return as soon as one more frame is complete (streaming latency) instead of running
                every runnable step first.
        """
        threads = self.model.decode_threads if self.weight.device.type == "cpu" else 0
        with torch.inference_mode(), intra_op_threads(threads):
            while self._runnable():
                self._step()
                if stop_at_frame and self._complete() > self.emitted:
                    break
            done = self._complete()
            if done <= self.emitted:
                return None
            first, stop = self.emitted - self.seq_start, done - self.seq_start
            self.emitted = done

            def frames(
                steps: Tensor,
            ) -> Tensor:  # step layout [B, K, S, ...] -> the new frames [B, K, m, ...]
                return torch.stack([steps[:, k, first + d : stop + d] for k, d in enumerate(self.delays)], 1)

            codes = frames(self.seq)
            if self.logits is None:
                return codes
            logits = frames(self.logits)
            sp = self.sampling
            sampled = not sp.greedy and sp.temperature > 0
            return codes, (logits / sp.temperature if sampled else logits).softmax(dim=-1)

    def _step(self) -> None:
        s = self.step
        if s == 0:
            emb = self.bos
        else:
            idx = self.seq[:, :, s - 1 - self.seq_start] + self.offsets
            prev = s - 1
            if prev < self.max_delay or (self.total is not None and prev >= self.total):
                # Ramps of the pattern: codebooks whose frame lies outside [0, Tq) read the special token.
                frame = prev - self.delay_t
                valid = (frame >= 0) & (frame < (self.total if self.total is not None else prev + 1))
                idx = torch.where(valid, idx, self.special_ids)
            emb = F.embedding_bag(idx, self.weight, mode="sum")
        frame = s + self.shift
        cond = self.audio[:, frame - self.audio_start] if 0 <= frame < self.received else self.pad
        x = emb + cond
        if self.cfg:
            x = torch.cat([x, emb + self.null])
        logits = self.model.step_logits(x, self.rope[s - self.rope_start], self.cache, self.weights)
        self.cache.advance()
        sp = self.sampling
        if self.cfg:
            logits = torch.lerp(logits[self.batch :], logits[: self.batch], sp.cfg_scale)
        if self.record is not None:
            self.record[:, :, s] = logits
        if self.logits is not None:
            self.logits[:, :, s - self.seq_start] = logits
        if self.teacher is not None:
            tokens = self.teacher[:, :, s]
        else:
            tokens = sample_tokens(logits, sp.temperature, sp.top_k, sp.top_p, sp.greedy, sp.generator)
        self.seq[:, :, s - self.seq_start] = tokens
        self.step = s + 1
