"""FaceFormer-style continuous regression baseline.

Audio features already aligned to the motion frame rate go in, per-frame motion (vertex offsets or face-model
parameters, flattened) comes out. The structure follows FaceFormer: a speaker-style embedding and a periodic
positional encoding form the decoder queries, self-attention is causal with a linear distance bias (ALiBi-like,
FaceFormer's "biased causal multi-head self-attention"), and cross-attention to audio is restricted by an
alignment mask so that frame t only sees audio frames in ``[t - lookback, t + lookahead]``.

Unlike the original, the decoder does not feed its own previous outputs back in: the queries carry no motion,
so training is one parallel pass and inference has no exposure bias or quadratic re-decoding. The look-ahead is
declared, so the model is streamable with a latency of ``lookahead`` frames plus the encoder's own look-ahead.
"""

from __future__ import annotations

import math

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
    ) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}.")
        self.motion_dim = motion_dim
        self.num_styles = num_styles
        self.num_heads = num_heads
        self.period = period
        self.lookback = lookback
        self.lookahead = lookahead
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
