"""The causal transformer block of MotionLM, in its whole-sequence form and its one-position (decoding) form.

The block has two entry points that compute the same function: ``forward`` runs a whole sequence at once
(training, scoring) and :class:`StepWeights` ``.step`` runs one position against a
:class:`~motion.lm.kv_cache.KVCache` (generation). Positions are rotary (RoPE), applied to keys before they are
cached, so attention only depends on distances and the cache can hold the last ``capacity`` keys in any order.
``forward`` applies the same sliding window as a mask (:func:`window_mask`), so both paths agree for any length.
:class:`StepTrunk` is the one-position form of a whole stack of blocks with its final norm and output heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motion.lm.kv_cache import KVCache


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


@dataclass(frozen=True)
class StepTrunk:
    """A whole transformer (blocks, final LayerNorm, output heads) prepared for one-position decoding.

    Holds every block's :class:`StepWeights` and the norm and heads parameters (the heads matrix as a contiguous
    ``[D, K * C]`` copy), prepared once per decoding session. :meth:`logits` is the one-step form of running the
    blocks, the norm and the heads over a whole sequence.
    """

    blocks: tuple[StepWeights, ...]
    norm_weight: Tensor
    norm_bias: Tensor
    norm_eps: float
    heads: Tensor
    heads_bias: Tensor
    num_codebooks: int
    codebook_size: int

    @classmethod
    def prepare(
        cls, blocks: nn.ModuleList, norm: nn.LayerNorm, heads: nn.Linear, num_codebooks: int
    ) -> StepTrunk:
        """From the modules: ``blocks`` of :class:`CausalBlock`, the final ``norm``, the ``[D] -> [K * C]`` heads."""
        return cls(
            tuple(block.step_weights() for block in blocks),
            norm.weight.detach(),
            norm.bias.detach(),
            norm.eps,
            heads.weight.detach().t().contiguous(),
            heads.bias.detach(),
            num_codebooks,
            heads.out_features // num_codebooks,
        )

    def logits(self, x: Tensor, freqs: Tensor, cache: KVCache) -> Tensor:
        """One position through every block against the cache: inputs ``[N, D]`` -> logits ``[N, K, C]``.

        Args:
            x: ``[N, D]`` inputs of the current position.
            freqs: ``[Dh/2]`` complex rotary phase of the current position.
            cache: One layer per block; the position's keys and values are written at ``cache.position`` (call
                ``cache.advance()`` afterwards).
        """
        for i, block in enumerate(self.blocks):
            x = block.step(x, freqs, cache, i)
        h = F.layer_norm(x, (x.shape[-1],), self.norm_weight, self.norm_bias, self.norm_eps)
        return torch.addmm(self.heads_bias, h, self.heads).view(
            x.shape[0], self.num_codebooks, self.codebook_size
        )
