"""Incremental decoding of motion tokens: frames leave the tokenizer's decoder as soon as they are exact.

The convolutional decoder of :class:`~motion.tokens.tokenizer.MotionTokenizer` is local: decoded frame f depends on
the tokens within a fixed reach on each side of its own token ``f // stride``. :class:`StreamingTokenDecoder`
measures that reach once (structurally, from the decoder's Jacobian on random inputs) and then decodes each new
batch of tokens inside a window that covers the reach of the frames it emits, so the streamed frames equal
decoding the whole sequence at once (to float rounding): no approximation, only a latency of ``right_tokens``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from motion.tokens.tokenizer import MotionTokenizer


def decoder_reach(tokenizer: MotionTokenizer, probe_tokens: int = 64) -> tuple[int, int]:
    """Tokens ``(left, right)`` of its own token that a decoded frame can depend on.

    Computed from the gradient of the middle token's frames with respect to the decoder's latent input: a
    structural property of the convolution stack (kernel sizes, dilations, upsampling), independent of the
    weights. One token of margin is added on each side.

    Args:
        tokenizer: The tokenizer whose decoder is measured.
        probe_tokens: Length of the probe sequence; must exceed the decoder's receptive field.
    """
    decoder = tokenizer.decoder
    param = next(decoder.parameters())
    latent_dim = tokenizer.quantizer.dim
    mid = probe_tokens // 2
    s = tokenizer.stride
    g = torch.Generator().manual_seed(0)
    # Autograd even when called under torch.inference_mode or no_grad (e.g. from inside a generation call).
    with torch.inference_mode(False), torch.enable_grad():
        z = torch.randn(1, probe_tokens, latent_dim, generator=g).to(param)  # [B, Tq, latent]
        z.requires_grad_(True)
        out = decoder(z)  # [1, T, D]
        weights = torch.randn(out[:, mid * s : (mid + 1) * s].shape, generator=g).to(out)
        (out[:, mid * s : (mid + 1) * s] * weights).sum().backward()
    touched = (z.grad.abs().sum(dim=-1)[0] > 0).nonzero().flatten()
    left, right = mid - int(touched.min()), int(touched.max()) - mid
    if int(touched.min()) == 0 or int(touched.max()) == probe_tokens - 1:
        raise ValueError(
            f"decoder_reach: the receptive field exceeds {probe_tokens} probe tokens; pass more."
        )
    return left + 1, right + 1


class StreamingTokenDecoder:
    """Turns codes (or latents) arriving a few token frames at a time into exact motion frames.

    ``push(codes)`` returns the frames that can no longer change; ``flush(length)`` returns the rest once the
    stream has ended (cropped so that the total is ``length`` frames). Concatenated, the outputs equal
    ``tokenizer.decode(all_codes, length)``. ``push_latent(z)`` takes quantized latents instead (any point of the
    latent space, e.g. expected code vectors), and the outputs equal ``tokenizer.decode_latent(all_z, length)``;
    codes are turned into latents token by token on arrival, so both feeds can be mixed.

    Args:
        tokenizer: A trained tokenizer in eval mode.
        history_tokens: Tokens kept for context; never fewer than the measured left reach.
    """

    def __init__(self, tokenizer: MotionTokenizer, history_tokens: int = 0) -> None:
        self.tokenizer = tokenizer
        self.left, self.right = decoder_reach(tokenizer)
        self.history = max(history_tokens, self.left)
        self.stride = tokenizer.stride
        self.reset()

    @property
    def latency_tokens(self) -> int:
        """Token frames a frame waits for after its own token before it is decoded."""
        return self.right

    def reset(self) -> None:
        """Start a new stream."""
        self._latents: Tensor | None = None  # kept latents [B, n, latent_dim]
        self._offset = 0  # global index of self._latents[:, 0]
        self._emitted = 0  # tokens whose frames were returned

    def _append(self, z: Tensor) -> None:
        self._latents = z if self._latents is None else torch.cat([self._latents, z.to(self._latents)], dim=1)

    def _decode(self, stop: int, final: bool) -> Tensor:
        """Frames of tokens ``[emitted, stop)`` decoded in a window that holds their whole reach."""
        assert self._latents is not None
        total = self._offset + self._latents.shape[1]
        start = max(self._offset, self._emitted - self.left)
        end = total if final else min(total, stop + self.right)
        window = self._latents[:, start - self._offset : end - self._offset]
        with torch.no_grad():
            frames = self.tokenizer.decode_latent(window)  # [B, (end - start) * s, D]
        a = (self._emitted - start) * self.stride
        out = frames[:, a : a + (stop - self._emitted) * self.stride]
        self._emitted = stop
        keep_from = max(self._offset, self._emitted - self.history)
        self._latents = self._latents[:, keep_from - self._offset :]
        self._offset = keep_from
        return out

    def push(self, codes: Tensor) -> Tensor:
        """Add tokens ``[B, K', n]`` (the first K' codebooks); returns the newly exact frames ``[B, m * stride, D]``."""
        if codes.dim() != 3:
            raise ValueError(f"StreamingTokenDecoder.push expects codes [B, K, n], got {tuple(codes.shape)}.")
        with torch.no_grad():
            return self.push_latent(self.tokenizer.quantizer.decode(codes))

    def push_latent(self, z: Tensor) -> Tensor:
        """Add latents ``[B, n, latent_dim]``; returns the newly exact frames ``[B, m * stride, D]`` (m may be 0)."""
        if z.dim() != 3 or z.shape[-1] != self.tokenizer.quantizer.dim:
            raise ValueError(
                f"StreamingTokenDecoder.push_latent expects latents [B, n, {self.tokenizer.quantizer.dim}], got "
                f"{tuple(z.shape)}."
            )
        self._append(z)
        total = self._offset + self._latents.shape[1]
        ready = total - self.right
        if ready <= self._emitted:
            return self._latents.new_zeros(self._latents.shape[0], 0, self.tokenizer.motion_dim)
        return self._decode(ready, final=False)

    def flush(self, length: int | None = None) -> Tensor:
        """The remaining frames at the end of the stream, cropped so the stream totals ``length`` frames."""
        if self._latents is None:
            raise ValueError("StreamingTokenDecoder.flush called before any codes were pushed.")
        total = self._offset + self._latents.shape[1]
        out = self._decode(total, final=True) if total > self._emitted else None
        if out is None:
            out = self._latents.new_zeros(self._latents.shape[0], 0, self.tokenizer.motion_dim)
        if length is not None:
            full = total * self.stride
            if not full - self.stride < length <= full:
                raise ValueError(
                    f"flush length={length} does not match {total} tokens at stride {self.stride}."
                )
            out = out[:, : out.shape[1] - (full - length)]
        return out
