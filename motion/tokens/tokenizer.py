"""Motion tokenizer: temporal 1-D conv encoder -> residual VQ -> mirrored conv decoder.

Motion ``[B, T, D]`` (flattened vertex offsets or face-model parameters) becomes ``K`` streams of discrete tokens
``[B, K, Tq]`` with ``Tq = ceil(T / stride)``, and back. The encoder downsamples by 2 per level (``stride`` in
{1, 2, 4}) with kernel-4 strided convolutions; the decoder mirrors it with nearest upsampling + convolution and
crops back to exactly T frames. Between levels, stacks of dilated residual blocks widen the receptive field.

With ``causal=True`` every convolution pads on the left only, so token t depends on frames up to the end of its
own stride window and decoded frame j on tokens up to ``j // stride``: a generator can stream frames as soon as
their token is sampled. The default (non-causal) sees a few frames of the future on both sides and reconstructs
slightly better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motion.tokens.quantizer import ResidualVQ


@dataclass(frozen=True)
class TokenizerOutput:
    """Output of ``MotionTokenizer.forward``.

    Attributes:
        reconstruction: ``[B, T, D]`` decoded motion (in the input's units).
        codes: ``[B, K', Tq]`` token indices, K' = ``num_quantizers`` codebooks used.
        commitment_loss: Scalar commitment loss (already weighted).
        perplexity: ``[K]`` per-codebook perplexity of this batch (0 for unused codebooks).
        usage: ``[K]`` fraction of each codebook used in this batch (0 for unused codebooks).
        num_quantizers: Number of codebooks used (smaller than K under quantizer dropout).
    """

    reconstruction: Tensor
    codes: Tensor
    commitment_loss: Tensor
    perplexity: Tensor
    usage: Tensor
    num_quantizers: int


class PaddedConv1d(nn.Conv1d):
    """``Conv1d`` that pads itself: ``kernel - stride`` (times dilation) frames, split ("same") or all left (causal).

    With ``T`` divisible by ``stride`` the output has exactly ``T / stride`` frames.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        total = dilation * (kernel_size - 1) + 1 - stride
        self.pad = (total, 0) if causal else (total // 2, total - total // 2)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """``x`` ``[B, C, T]``; ``valid`` ``[B, T]`` bool zeroes the frames past each sequence's end first, so
        that they are read as the zero padding of a sequence alone."""
        if valid is not None:
            x = x * valid[:, None, :].to(x.dtype)
        return super().forward(F.pad(x, self.pad))


class ResBlock1d(nn.Module):
    """``x + conv1x1(act(conv_k3_dilated(act(x))))`` on ``[B, H, T]``."""

    def __init__(self, channels: int, dilation: int, causal: bool) -> None:
        super().__init__()
        self.conv = PaddedConv1d(channels, channels, 3, dilation=dilation, causal=causal)
        self.proj = nn.Conv1d(channels, channels, 1)
        self.act = nn.SiLU()

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        return x + self.proj(self.act(self.conv(self.act(x), valid)))


def _res_stack(channels: int, num_blocks: int, causal: bool) -> nn.Sequential:
    # Dilations 1, 3, 9, ... grow the receptive field geometrically at a constant cost per block.
    return nn.Sequential(*(ResBlock1d(channels, 3**i, causal) for i in range(num_blocks)))


class ConvMotionEncoder(nn.Module):
    """``[B, T, D] -> [B, T / stride, latent]`` (T must be a multiple of stride; the tokenizer pads).

    Args:
        motion_dim: Input features D.
        latent_dim: Output features.
        hidden_dim: Channels H of the hidden convolutions.
        stride: Temporal downsampling, a power of two.
        num_res_blocks: Dilated residual blocks per resolution level.
        causal: Pad every convolution on the left only.
        io_kernel: Temporal kernel of the first convolution, the one that reads the D motion features (see
            ``MotionTokenizer``).
    """

    def __init__(
        self,
        motion_dim: int = 15069,
        latent_dim: int = 64,
        hidden_dim: int = 256,
        stride: int = 1,
        num_res_blocks: int = 2,
        causal: bool = False,
        io_kernel: int = 3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [PaddedConv1d(motion_dim, hidden_dim, io_kernel, causal=causal)]
        for _ in range(int(math.log2(stride))):
            layers += [_res_stack(hidden_dim, num_res_blocks, causal), nn.SiLU()]
            layers.append(PaddedConv1d(hidden_dim, hidden_dim, 4, stride=2, causal=causal))
        layers += [
            _res_stack(hidden_dim, num_res_blocks, causal),
            nn.SiLU(),
            nn.Conv1d(hidden_dim, latent_dim, 1),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x`` ``[B, T, D]`` -> ``[B, T / stride, latent]``; ``lengths`` ``[B]`` (multiples of stride): see
        :func:`_masked`."""
        return _masked(self.net, x.transpose(1, 2), lengths).transpose(1, 2)


def _masked(net: nn.Sequential, h: Tensor, lengths: Tensor | None) -> Tensor:
    """``net`` on ``h`` ``[B, C, T]``. With ``lengths`` ``[B]`` (frames at the input's rate), each sequence's
    activations past its end are zeroed before every temporal convolution, which then reads them as the zero padding
    of a sequence alone: a sequence encodes and decodes as it does alone, whatever the batch pads it with."""
    if lengths is None:
        return net(h)
    for layer in net:
        for block in list(layer) if isinstance(layer, nn.Sequential) else [layer]:
            if isinstance(block, (PaddedConv1d, ResBlock1d)):
                h = block(h, torch.arange(h.shape[-1], device=h.device)[None, :] < lengths[:, None])
                if isinstance(block, PaddedConv1d) and block.stride[0] > 1:
                    lengths = lengths // block.stride[0]
            else:
                h = block(h)
                if isinstance(block, nn.Upsample):
                    lengths = lengths * int(block.scale_factor)
    return h


class ConvMotionDecoder(nn.Module):
    """``[B, Tq, latent] -> [B, Tq * stride, D]``, the mirror of ``ConvMotionEncoder``.

    Args:
        motion_dim: Output features D.
        latent_dim: Input features.
        hidden_dim: Channels H of the hidden convolutions.
        stride: Temporal upsampling, a power of two.
        num_res_blocks: Dilated residual blocks per resolution level.
        causal: Pad every convolution on the left only.
        io_kernel: Temporal kernel of the last convolution, the one that writes the D motion features.
    """

    def __init__(
        self,
        motion_dim: int = 15069,
        latent_dim: int = 64,
        hidden_dim: int = 256,
        stride: int = 1,
        num_res_blocks: int = 2,
        causal: bool = False,
        io_kernel: int = 3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [PaddedConv1d(latent_dim, hidden_dim, 3, causal=causal)]
        layers.append(_res_stack(hidden_dim, num_res_blocks, causal))
        for _ in range(int(math.log2(stride))):
            # Nearest upsampling + conv instead of a transposed conv: no checkerboard artefacts in time.
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                PaddedConv1d(hidden_dim, hidden_dim, 3, causal=causal),
            ]
            layers.append(_res_stack(hidden_dim, num_res_blocks, causal))
        layers += [nn.SiLU(), PaddedConv1d(hidden_dim, motion_dim, io_kernel, causal=causal)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``z`` ``[B, Tq, latent]`` -> ``[B, Tq * stride, D]``; ``lengths`` ``[B]`` in tokens: see :func:`_masked`."""
        return _masked(self.net, z.transpose(1, 2), lengths).transpose(1, 2)


class MotionTokenizer(nn.Module):
    """Residual-VQ autoencoder that turns motion into K parallel token streams.

    Inputs are normalised with the ``motion_mean`` / ``motion_std`` buffers (identity until
    ``set_normalization`` is called; vertex offsets in metres need it) and outputs are mapped back.

    Args:
        motion_dim: Motion features D per frame (e.g. 5023 * 3 vertex offsets, or face-model parameters).
        latent_dim: Size of the quantized latent; must equal the quantizer's ``dim``.
        hidden_dim: Channels of the conv encoder/decoder.
        stride: Frames per token, 1, 2 or 4; ``Tq = ceil(T / stride)``.
        num_res_blocks: Dilated residual blocks per resolution level.
        causal: Left-padded convolutions so that decoding can stream token by token.
        quantizer: The residual quantizer; default ``ResidualVQ(dim=latent_dim)``.
        io_kernel: Temporal kernel (odd) of the two convolutions on the motion side: the encoder's first, which
            reads the D features, and the decoder's last, which writes them. With vertex offsets D is large
            (15069 for FLAME), so these two layers hold most of the weights and the compute; 1 makes them
            per-frame linear maps (as the vertex embeddings of CodeTalker and FaceFormer), three times smaller
            and cheaper, and leaves the temporal context to the hidden convolutions. The default 3 is the
            layout of earlier checkpoints.
    """

    def __init__(
        self,
        motion_dim: int = 15069,
        latent_dim: int = 64,
        hidden_dim: int = 256,
        stride: int = 1,
        num_res_blocks: int = 2,
        causal: bool = False,
        quantizer: ResidualVQ | None = None,
        io_kernel: int = 3,
    ) -> None:
        super().__init__()
        if io_kernel < 1 or io_kernel % 2 == 0:
            raise ValueError(f"MotionTokenizer io_kernel={io_kernel} must be an odd number >= 1 (1 or 3).")
        if stride not in (1, 2, 4):
            raise ValueError(f"MotionTokenizer stride={stride} is not supported; use 1, 2 or 4.")
        if motion_dim < 1 or latent_dim < 1 or hidden_dim < 1 or num_res_blocks < 0:
            raise ValueError(
                "MotionTokenizer motion_dim, latent_dim and hidden_dim must be >= 1 (num_res_blocks >= 0)."
            )
        quantizer = quantizer if quantizer is not None else ResidualVQ(dim=latent_dim)
        if quantizer.dim != latent_dim:
            raise ValueError(
                f"MotionTokenizer latent_dim={latent_dim} differs from the quantizer's dim={quantizer.dim}; "
                "set them to the same value."
            )
        self.motion_dim = motion_dim
        self.stride = stride
        self.causal = causal
        self.encoder = ConvMotionEncoder(
            motion_dim, latent_dim, hidden_dim, stride, num_res_blocks, causal, io_kernel
        )
        self.quantizer = quantizer
        self.decoder = ConvMotionDecoder(
            motion_dim, latent_dim, hidden_dim, stride, num_res_blocks, causal, io_kernel
        )
        self.register_buffer("motion_mean", torch.zeros(motion_dim))
        self.register_buffer("motion_std", torch.ones(motion_dim))

    @property
    def num_quantizers(self) -> int:
        """Number of codebooks K."""
        return self.quantizer.num_quantizers

    @property
    def codebook_size(self) -> int:
        """Codes per codebook C."""
        return self.quantizer.codebook_size

    @property
    def token_rate(self) -> float:
        """Token frames per motion frame (``1 / stride``); multiply by the motion fps for tokens per second."""
        return 1.0 / self.stride

    def num_tokens(self, num_frames: int) -> int:
        """Tq for T motion frames: ``ceil(T / stride)``."""
        return -(-num_frames // self.stride)

    @torch.no_grad()
    def set_normalization(self, mean: Tensor | float, std: Tensor | float) -> None:
        """Sets the per-feature normalisation (``[D]`` tensors or scalars), e.g. from training-set statistics.

        Raises:
            ValueError: if a tensor has the wrong size or ``std`` is not strictly positive.
        """
        mean_t = torch.as_tensor(mean, dtype=torch.float32).expand(self.motion_dim)
        std_t = torch.as_tensor(std, dtype=torch.float32).expand(self.motion_dim)
        if not bool((std_t > 0).all()):
            raise ValueError("MotionTokenizer.set_normalization: std must be > 0 everywhere; clamp it first.")
        self.motion_mean.copy_(mean_t)
        self.motion_std.copy_(std_t)

    def token_mask(self, mask: Tensor | None, num_frames: int) -> Tensor | None:
        """``[B, T]`` frame mask -> ``[B, Tq]`` token mask (a token is valid if any of its frames is)."""
        if mask is None:
            return None
        pad = self.num_tokens(num_frames) * self.stride - num_frames
        return F.pad(mask, (0, pad), value=False).reshape(mask.shape[0], -1, self.stride).any(dim=-1)

    def _check(self, motion: Tensor, mask: Tensor | None) -> None:
        if motion.dim() != 3 or motion.shape[-1] != self.motion_dim or motion.shape[1] < 1:
            raise ValueError(
                f"MotionTokenizer expects motion [B, T>=1, {self.motion_dim}], got {list(motion.shape)}; "
                "check motion_dim against the dataset."
            )
        if mask is not None and (mask.shape != motion.shape[:2] or mask.dtype != torch.bool):
            raise ValueError(f"MotionTokenizer mask must be a bool tensor of shape {list(motion.shape[:2])}.")

    def _encode_latent(self, motion: Tensor, mask: Tensor | None) -> Tensor:
        x = (motion - self.motion_mean) / self.motion_std
        b, t = motion.shape[:2]
        if mask is not None:  # padding content must not leak into valid tokens through the convolutions
            x = x * mask[..., None].to(x.dtype)
        padded = self.num_tokens(t) * self.stride
        if padded > t:
            x = F.pad(x, (0, 0, 0, padded - t))
        # Each sequence's last token is completed by repeating its last frame (motion continues smoothly instead of
        # snapping to zero), per sequence, so that a sequence encodes the same whatever it is batched with: as
        # alone, where the batch's end is its own end. Beyond that, zeros, as the convolutions pad alone.
        lengths = mask.sum(dim=1) if mask is not None else torch.full((b,), t, device=x.device)
        rounded = (lengths + self.stride - 1) // self.stride * self.stride
        frames = torch.arange(padded, device=x.device)
        fill = (frames >= lengths[:, None]) & (frames < rounded[:, None])
        if bool(fill.any()):
            last = x[torch.arange(b, device=x.device), (lengths - 1).clamp(min=0)]
            x = torch.where(fill[..., None], last[:, None], x)
        return self.encoder(x, rounded if mask is not None else None)

    def _token_lengths(self, mask: Tensor | None) -> Tensor | None:
        """``[B]`` tokens of each sequence of a padded batch (None without a mask)."""
        return None if mask is None else (mask.sum(dim=1) + self.stride - 1) // self.stride

    def _decode_latent(self, z: Tensor, length: int, token_lengths: Tensor | None = None) -> Tensor:
        decoded = self.decoder(z, token_lengths)[:, :length]
        return torch.addcmul(self.motion_mean, decoded, self.motion_std)  # one pass

    def forward(
        self, motion: Tensor, mask: Tensor | None = None, num_quantizers: int | None = None
    ) -> TokenizerOutput:
        """Encodes, quantizes (updating codebooks in training mode) and decodes.

        Args:
            motion: ``[B, T, D]``.
            mask: ``[B, T]`` bool, True on valid frames; padded frames are zeroed before encoding and excluded
                from the quantizer's statistics and losses.
            num_quantizers: Use the first n codebooks only (default: all, or random under quantizer dropout).
        """
        self._check(motion, mask)
        z = self._encode_latent(motion, mask)
        result = self.quantizer(z, self.token_mask(mask, motion.shape[1]), num_quantizers)
        return TokenizerOutput(
            reconstruction=self._decode_latent(result.quantized, motion.shape[1], self._token_lengths(mask)),
            codes=result.codes,
            commitment_loss=result.commitment_loss,
            perplexity=result.perplexity,
            usage=result.usage,
            num_quantizers=result.num_quantizers,
        )

    @torch.no_grad()
    def encode(self, motion: Tensor, mask: Tensor | None = None, num_quantizers: int | None = None) -> Tensor:
        """Tokens ``[B, n, Tq]`` of motion ``[B, T, D]`` (n defaults to K). Never updates the codebooks."""
        self._check(motion, mask)
        z = self._encode_latent(motion, mask)
        return self.quantizer.encode(z, self.token_mask(mask, motion.shape[1]), num_quantizers)

    def decode(self, codes: Tensor, length: int | None = None) -> Tensor:
        """Motion ``[B, T, D]`` from tokens ``[B, K', Tq]`` (the first K' <= K codebooks).

        Args:
            codes: Token indices.
            length: T to crop to, in ``((Tq - 1) * stride, Tq * stride]``; default ``Tq * stride``.
        """
        return self.decode_latent(self.quantizer.decode(codes), length)

    def decode_latent(self, z: Tensor, length: int | None = None) -> Tensor:
        """Motion ``[B, T, D]`` from quantized latents ``[B, Tq, latent_dim]`` (sums of code vectors, or any point of
        the latent space, e.g. an expectation over codes); ``length`` as in :meth:`decode`."""
        full = z.shape[1] * self.stride
        length = full if length is None else length
        if not full - self.stride < length <= full:
            raise ValueError(
                f"decode length={length} does not match {z.shape[1]} tokens at stride {self.stride}; "
                f"pass a length in ({full - self.stride}, {full}]."
            )
        return self._decode_latent(z, length)
