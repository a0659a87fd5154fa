"""FaceFormer-style continuous regression baseline.

Audio features already aligned to the motion frame rate go in, per-frame motion (vertex offsets or face-model
parameters, flattened) comes out. The structure follows FaceFormer: a speaker-style embedding and a periodic
positional encoding form the decoder queries, self-attention is causal with a linear distance bias (ALiBi-like,
FaceFormer's "biased causal multi-head self-attention"), and cross-attention to audio is restricted by an
alignment mask so that frame t only sees audio frames in ``[t - lookback, t + lookahead]``.

Unlike the original, the decoder does not feed its own previous outputs back in: the queries carry no motion,
so training is one parallel pass and inference has no exposure bias or quadratic re-decoding. The look-ahead is
declared, so the model is streamable with a latency of ``lookahead`` frames plus the encoder's own look-ahead.

Inference on long audio (:meth:`FaceFormerRegressor.windowed`) runs in blocks of frames: self-attention reads the
last ``attention_window`` frames through a cache of each layer's keys, cross-attention the block's audio slice,
so no ``[T, T]`` tensor is built and memory does not grow with the length. The training pass (:meth:`forward`)
attends the whole past; the two agree (to float rounding) on sequences up to ``attention_window`` frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn


class PeriodicPositionalEncoding(nn.Module):
    """Sinusoidal encoding that repeats every ``period`` frames (FaceFormer's PPE).

    Repeating keeps the encoding in-distribution for sequences longer than any seen in training, which removes
    the hard cap on audio length.

    Args:
        d_model: Feature size D.
        period: Period in frames.
    """

    def __init__(self, d_model: int, period: int = 30) -> None:
        super().__init__()
        position = torch.arange(period, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(period, d_model)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div[: d_model // 2])
        self.register_buffer("pe", pe, persistent=False)
        self.period = period

    def forward(self, num_frames: int) -> Tensor:
        """Returns ``[T, D]`` encodings for frames ``0..T-1``."""
        idx = torch.arange(num_frames, device=self.pe.device) % self.period
        return self.pe[idx]


def alibi_causal_bias(num_frames: int, num_heads: int, period: int, device: torch.device) -> Tensor:
    """Causal additive attention bias ``[H, T, T]`` with a per-head slope that grows every ``period`` frames.

    Future positions get ``-inf``; past positions are penalised by ``slope_h * floor(distance / period)`` as in
    FaceFormer, so recent context dominates without forbidding long-range attention.
    """
    slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / num_heads) for h in range(num_heads)], device=device)
    i = torch.arange(num_frames, device=device)
    distance = (i[:, None] - i[None, :]).clamp(min=0).float()
    bias = -slopes[:, None, None] * torch.div(distance, period, rounding_mode="floor")[None]
    future = i[None, :] > i[:, None]
    return bias.masked_fill(future[None], float("-inf"))


def alibi_window_bias(queries: Tensor, keys: Tensor, num_heads: int, period: int, window: int) -> Tensor:
    """:func:`alibi_causal_bias` of query frames ``queries`` ``[n]`` over key frames ``keys`` ``[m]`` (absolute frame
    indices), ``[H, n, m]``, restricted to the last ``window`` frames: keys ``window`` or more frames back get
    ``-inf`` as future keys do. Within the window the values are those of :func:`alibi_causal_bias`.
    """
    slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / num_heads) for h in range(num_heads)], device=keys.device)
    delta = queries[:, None] - keys[None, :]
    distance = delta.clamp(min=0).float()
    bias = -slopes[:, None, None] * torch.div(distance, period, rounding_mode="floor")[None]
    outside = (delta < 0) | (delta >= window)
    return bias.masked_fill(outside[None], float("-inf"))


def alignment_mask(num_frames: int, lookback: int, lookahead: int, device: torch.device) -> Tensor:
    """Boolean ``[T, T]`` mask, True where motion frame t may attend aligned audio frame s.

    Allowed: ``t - lookback <= s <= t + lookahead``.
    """
    i = torch.arange(num_frames, device=device)
    delta = i[None, :] - i[:, None]
    return (delta >= -lookback) & (delta <= lookahead)


class DecoderLayer(nn.Module):
    """Pre-norm transformer decoder layer with explicit masks (self-attention bias, cross-attention mask)."""

    def __init__(self, d_model: int, num_heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d_model)
        self.cross_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.norm3 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, self_bias: Tensor, cross_mask: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.dropout(self.self_attn(h, h, h, attn_mask=self_bias, need_weights=False)[0])
        h = self.norm2(x)
        x = x + self.dropout(self.cross_attn(h, memory, memory, attn_mask=cross_mask, need_weights=False)[0])
        return x + self.dropout(self.ff(self.norm3(x)))

    def forward_window(
        self, x: Tensor, past: Tensor, memory: Tensor, self_bias: Tensor, cross_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """:meth:`forward` on a block of frames ``x`` ``[B, n, D]`` whose self-attention also reads ``past``
        ``[B, p, D]``, the normalised inputs of this layer at the frames before the block (the cached keys).

        Returns:
            The block's output ``[B, n, D]`` and its normalised input ``[B, n, D]`` (the keys later blocks read).
        """
        h = self.norm1(x)
        keys = torch.cat([past, h], dim=1)
        x = x + self.dropout(self.self_attn(h, keys, keys, attn_mask=self_bias, need_weights=False)[0])
        q = self.norm2(x)
        x = x + self.dropout(self.cross_attn(q, memory, memory, attn_mask=cross_mask, need_weights=False)[0])
        return x + self.dropout(self.ff(self.norm3(x))), h


class FaceFormerRegressor(nn.Module):
    """Audio features aligned to motion frames -> continuous motion, FaceFormer-style.

    The first three arguments come from the data and the audio encoder; a LightningModule receives this class as
    a factory (``Callable[[int, int, int], FaceFormerRegressor]``) and supplies them, so YAML sets only the rest.

    Args:
        motion_dim: Size of one motion frame, e.g. ``V * 3`` vertex offsets.
        num_styles: Number of speaking styles (training speakers) in the one-hot style embedding.
        audio_dim: Size of the incoming audio features (the encoder's output_dim).
        d_model: Transformer width.
        num_layers: Number of decoder layers.
        num_heads: Attention heads.
        ff_dim: Feed-forward hidden size.
        dropout: Dropout inside the decoder.
        period: Period in frames of the positional encoding and of the attention distance bias.
        lookback: Audio frames before t that frame t may attend.
        lookahead: Audio frames after t that frame t may attend (adds latency when streaming).
        attention_window: Frames that self-attention reads at inference (frame t reads ``t - window + 1 .. t``,
            :meth:`windowed`), which bounds memory and per-frame cost on long audio. Training attends the whole
            past of its sequences; the default (20 s at 30 fps) covers every training sentence of the configured
            datasets, so inference never attends farther back than training did, and sequences up to this
            length animate exactly as with full attention.
    """

    def __init__(
        self,
        motion_dim: int,
        num_styles: int,
        audio_dim: int,
        d_model: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        ff_dim: int = 256,
        dropout: float = 0.1,
        period: int = 30,
        lookback: int = 6,
        lookahead: int = 3,
        attention_window: int = 600,
    ) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}.")
        if attention_window < 1:
            raise ValueError(f"attention_window={attention_window} must be at least 1 frame.")
        self.motion_dim = motion_dim
        self.num_styles = num_styles
        self.num_heads = num_heads
        self.period = period
        self.lookback = lookback
        self.lookahead = lookahead
        self.attention_window = attention_window
        self.audio_proj = nn.Linear(audio_dim, d_model)
        self.style = nn.Embedding(num_styles, d_model)
        self.ppe = PeriodicPositionalEncoding(d_model, period)
        self.query_proj = nn.Linear(d_model, d_model)
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, num_heads, ff_dim, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, motion_dim)
        # Zero-initialised output (as FaceFormer does): training starts from the template, never from noise.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, audio: Tensor, style: Tensor, mask: Tensor | None = None) -> Tensor:
        """Regress motion.

        Args:
            audio: Aligned audio features ``[B, T, audio_dim]``.
            style: Style ids ``[B]`` (long) or style weights ``[B, num_styles]`` (e.g. an average of styles).
            mask: Optional ``[B, T]`` bool, True on valid frames; padded frames never feed valid ones.

        Returns:
            Motion ``[B, T, motion_dim]``.
        """
        b, t, _ = audio.shape
        memory = self.audio_proj(audio)
        style_vec = self.style(style) if style.dim() == 1 else style.to(memory.dtype) @ self.style.weight
        x = self.query_proj(style_vec[:, None, :] + self.ppe(t)[None])
        self_bias = alibi_causal_bias(t, self.num_heads, self.period, audio.device)
        self_bias = self_bias[None].expand(b, -1, -1, -1).reshape(b * self.num_heads, t, t)
        allowed = alignment_mask(t, self.lookback, self.lookahead, audio.device)[None].expand(b, t, t)
        if mask is not None:
            # Padded audio frames are never attended; a row left with nothing keeps its own frame.
            allowed = allowed & mask[:, None, :]
            allowed = allowed | torch.eye(t, dtype=torch.bool, device=audio.device)[None]
        cross = torch.zeros(allowed.shape, dtype=memory.dtype, device=audio.device)
        cross = cross.masked_fill(~allowed, float("-inf"))
        cross = cross[:, None].expand(b, self.num_heads, t, t).reshape(b * self.num_heads, t, t)
        self_bias = self_bias.to(memory.dtype)
        for layer in self.layers:
            x = layer(x, memory, self_bias, cross)
        return self.head(self.norm(x))

    def windowed(
        self, audio: Tensor, style: Tensor, mask: Tensor | None = None, block: int = 128
    ) -> Iterator[Tensor]:
        """Regress motion block by block, self-attention limited to the last ``attention_window`` frames.

        Memory is bounded by ``block`` and ``attention_window`` whatever the length: each block attends the
        cached normalised inputs of the ``attention_window - 1`` frames before it (per layer) and the audio frames
        ``[t - lookback, t + lookahead]`` of its frames. Equals :meth:`forward` (to float rounding) when
        ``T <= attention_window``; beyond, frame t no longer reads frames ``attention_window`` or more back.

        Args:
            audio: Aligned audio features ``[B, T, audio_dim]``.
            style: Style ids ``[B]`` (long) or style weights ``[B, num_styles]``.
            mask: Optional ``[B, T]`` bool, True on valid frames (as in :meth:`forward`).
            block: Frames per block.

        Yields:
            Motion ``[B, n, motion_dim]`` of consecutive blocks (n = ``block``, the last one shorter).
        """
        b, t, _ = audio.shape
        device = audio.device
        h, window = self.num_heads, self.attention_window
        style_vec = (
            self.style(style) if style.dim() == 1 else style.to(self.style.weight.dtype) @ self.style.weight
        )
        past = [style_vec.new_zeros(b, 0, style_vec.shape[-1]) for _ in self.layers]
        for start in range(0, t, max(1, block)):
            stop = min(t, start + max(1, block))
            frames = torch.arange(start, stop, device=device)
            x = self.query_proj(style_vec[:, None, :] + self.ppe.pe[frames % self.period][None])
            keys = torch.arange(start - past[0].shape[1], stop, device=device)
            bias = alibi_window_bias(frames, keys, h, self.period, window).to(x.dtype)
            bias = bias[None].expand(b, -1, -1, -1).reshape(b * h, stop - start, keys.numel())
            lo, hi = max(0, start - max(self.lookback, 0)), min(t, stop + max(self.lookahead, 0))
            memory = self.audio_proj(audio[:, lo:hi])
            cross = self._cross_mask(frames, lo, hi, mask, x.dtype)
            cross = cross[:, None].expand(b, h, -1, -1).reshape(b * h, stop - start, hi - lo)
            for i, layer in enumerate(self.layers):
                x, normed = layer.forward_window(x, past[i], memory, bias, cross)
                past[i] = torch.cat([past[i], normed], dim=1)[:, -(window - 1) :] if window > 1 else past[i]
            yield self.head(self.norm(x))

    def _cross_mask(
        self, frames: Tensor, lo: int, hi: int, mask: Tensor | None, dtype: torch.dtype
    ) -> Tensor:
        """Additive ``[B or 1, n, hi - lo]`` cross-attention mask of query ``frames`` over audio frames ``[lo, hi)``:
        the block's rows of :meth:`forward`'s mask."""
        keys = torch.arange(lo, hi, device=frames.device)
        delta = keys[None, :] - frames[:, None]
        allowed = ((delta >= -self.lookback) & (delta <= self.lookahead))[None]
        if mask is not None:
            allowed = (allowed & mask[:, None, lo:hi]) | (delta == 0)[None]
        zeros = torch.zeros(allowed.shape, dtype=dtype, device=frames.device)
        return zeros.masked_fill(~allowed, float("-inf"))
