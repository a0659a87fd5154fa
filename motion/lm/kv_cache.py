"""Preallocated sliding-window KV cache of the transformer's keys and values, written in place while decoding.

Keys are cached after their rotary phase is applied (:func:`motion.lm.transformer.apply_rope`), so attention only
depends on distances and a ring buffer of the last ``capacity`` keys can be read in any order: once full, the
cache wraps around in place and per-step cost stays flat however long the sequence runs.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
