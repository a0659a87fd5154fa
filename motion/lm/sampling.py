"""Token sampling: temperature, top-k, nucleus (top-p) and greedy decoding over the last logits axis."""

from __future__ import annotations

import torch
from torch import Tensor


class SamplingConfigError(ValueError):
    """Raised when a sampling argument is out of its valid range."""


def check_sampling(temperature: float, top_k: int, top_p: float, cfg_scale: float = 1.0) -> None:
    """Validate sampling arguments; raises :class:`SamplingConfigError` naming the argument and the fix."""
    if not temperature >= 0.0:
        raise SamplingConfigError(f"temperature={temperature} must be >= 0 (0 means greedy decoding).")
    if top_k < 0:
        raise SamplingConfigError(f"top_k={top_k} must be >= 0 (0 disables top-k filtering).")
    if not 0.0 <= top_p <= 1.0:
        raise SamplingConfigError(f"top_p={top_p} must be in [0, 1] (0 or 1 disables nucleus filtering).")
    if not cfg_scale == cfg_scale or cfg_scale in (float("inf"), float("-inf")):
        raise SamplingConfigError(f"cfg_scale={cfg_scale} must be a finite number (1 disables guidance).")


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 0.0) -> Tensor:
    """Set logits outside the top-k / nucleus sets to ``-inf`` (the most likely token always survives).

    Args:
        logits: ``[..., C]``.
        top_k: Keep the k largest logits; 0 (or >= C) keeps all.
        top_p: Keep the smallest set of most likely tokens whose probability mass reaches ``top_p``;
            0 or 1 keeps all.

    Returns:
        Filtered logits, same shape.
    """
    vocab = logits.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token once the tokens ranked above it already carry the requested mass.
        mass_before = probs.cumsum(dim=-1) - probs
        drop = mass_before >= top_p
        drop[..., 0] = False
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return logits


def sample_tokens(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw one token id per row of logits.

    Args:
        logits: ``[..., C]`` unnormalised scores.
        temperature: Divides the logits before filtering; 0 means greedy.
        top_k: See :func:`filter_logits`.
        top_p: See :func:`filter_logits`.
        greedy: Take the argmax (ignores temperature, top-k and top-p).
        generator: Random generator for reproducible sampling (must live on the logits' device).

    Returns:
        ``[...]`` long token ids in ``[0, C)``.
    """
    if greedy or temperature == 0.0:
        return logits.argmax(dim=-1)
    if temperature != 1.0:
        logits = logits / temperature
    logits = filter_logits(logits, top_k, top_p)
    probs = logits.softmax(dim=-1)
    flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
    return flat.view(probs.shape[:-1])
