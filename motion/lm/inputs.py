"""Validation of MotionLM's configuration and inputs where they enter, with errors that name the fix."""

from __future__ import annotations

import torch
from torch import Tensor

from talk.errors import UserError


class MotionLMInputError(UserError, ValueError):
    """Raised when codes, audio, style or mask given to MotionLM have the wrong shape, type or range."""


class MotionLMConfigError(UserError, ValueError):
    """Raised when a MotionLM constructor argument is out of its valid range."""


def check_config(
    d_model: int,
    num_heads: int,
    lookahead: int,
    max_context: int,
    num_styles: int,
    cfg_dropout: float,
    token_corruption: float,
) -> None:
    """Check the constructor arguments of ``MotionLM`` that have a valid range (see its docstring)."""
    if d_model % num_heads or (d_model // num_heads) % 2:
        raise MotionLMConfigError(
            f"d_model={d_model} / num_heads={num_heads} must be an even integer (rotary)."
        )
    if lookahead < 0:
        raise MotionLMConfigError(f"lookahead={lookahead} must be >= 0 audio frames.")
    if max_context < 1:
        raise MotionLMConfigError(f"max_context={max_context} must be at least 1 step.")
    if num_styles < 1:
        raise MotionLMConfigError(f"num_styles={num_styles} must be at least 1.")
    if not 0.0 <= cfg_dropout <= 1.0:
        raise MotionLMConfigError(f"cfg_dropout={cfg_dropout} must be a probability in [0, 1].")
    if not 0.0 <= token_corruption < 1.0:
        raise MotionLMConfigError(f"token_corruption={token_corruption} must be a probability in [0, 1).")


def loss_weights(codebook_weights: list[float] | None, num_codebooks: int) -> Tensor | None:
    """``[K]`` loss weights normalised to mean 1 from K non-negative numbers, not all zero; None stays None."""
    if codebook_weights is None:
        return None
    if len(codebook_weights) != num_codebooks or min(codebook_weights) < 0 or max(codebook_weights) <= 0:
        raise MotionLMConfigError(
            f"codebook_weights={list(codebook_weights)} must hold {num_codebooks} non-negative weights, "
            "not all zero."
        )
    weights = torch.tensor([float(w) for w in codebook_weights])
    return weights / weights.mean()


def check_audio(audio: Tensor, audio_dim: int, name: str = "audio") -> None:
    """Audio features must be a float ``[B, Tq, audio_dim]`` tensor at the token rate."""
    if audio.dim() != 3 or audio.shape[-1] != audio_dim or not audio.is_floating_point():
        raise MotionLMInputError(
            f"{name} must be a float tensor [B, Tq, audio_dim={audio_dim}] at the token rate; "
            f"got {tuple(audio.shape)} {audio.dtype}."
        )


def check_codes(
    codes: Tensor, audio: Tensor, mask: Tensor | None, num_codebooks: int, codebook_size: int
) -> tuple[Tensor, Tensor | None]:
    """Check teacher-forcing codes against their (checked) audio and optional padding mask.

    Args:
        codes: ``[B, K, Tq]`` integer codes in ``[0, C)`` (anything on padded frames).
        audio: ``[B, Tq, Da]`` audio features.
        mask: Optional ``[B, Tq]`` bool, True on valid frames (a prefix of each row: right padding).
        num_codebooks: K.
        codebook_size: C.

    Returns:
        ``(codes with padded frames set to C, lengths [B] or None)``.
    """
    if codes.dim() != 3 or codes.shape[1] != num_codebooks or codes.is_floating_point():
        raise MotionLMInputError(
            f"codes must be integer [B, K={num_codebooks}, Tq]; got {tuple(codes.shape)} {codes.dtype}."
        )
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
    if int(checked.min()) < 0 or int(checked.max()) >= codebook_size:
        raise MotionLMInputError(f"codes must lie in [0, codebook_size={codebook_size}).")
    if mask is not None:  # padded frames become "nothing here", exactly as past the end in generation
        codes = codes.masked_fill(~mask[:, None, :], codebook_size)
    return codes, lengths
