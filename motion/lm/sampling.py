"""How generated tokens are chosen: the :class:`Sampling` contract, and the token draw it describes.

One frozen, validated value says everything about token choice (temperature, top-k, nucleus, classifier-free
guidance and the random seed), so offline generation, streaming and every caller above them share one contract:
``temperature=0`` is greedy decoding (argmax) and the only way to ask for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from talk.errors import UserError


class SamplingConfigError(UserError, ValueError):
    """Raised when a sampling setting is out of its valid range."""


@dataclass(frozen=True)
class Sampling:
    """Token choice of ``MotionLM.generate`` / ``MotionLM.stream``, validated on construction.

    Attributes:
        temperature: Softmax temperature of sampled decoding; 0 means greedy decoding (argmax), which ignores
            ``top_k``, ``top_p`` and ``seed``.
        top_k: Sample among the k most likely codes (0 or >= C: all).
        top_p: Nucleus mass: sample among the smallest set of most likely codes reaching it (0 or 1: all).
        cfg_scale: Classifier-free guidance, logits ``u + cfg_scale * (c - u)`` from the conditional (c) and
            unconditional (u) branches; 1 runs the conditional branch only.
        seed: Sampled decoding draws from fresh ``torch.Generator`` s seeded with this, one per sequence of the
            batch (:meth:`generators`), so a call is reproducible, a stream draws exactly what offline generation
            draws, and a sequence gets the same tokens whatever it is batched (or, under DDP, sharded) with;
            None draws from torch's global generator.

    Raises:
        SamplingConfigError: A field is out of range; the message names the field and the fix.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.0
    cfg_scale: float = 1.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        if not self.temperature >= 0.0:  # also rejects NaN
            raise SamplingConfigError(
                f"temperature={self.temperature} must be >= 0 (0 means greedy decoding)."
            )
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise SamplingConfigError(
                f"top_k={self.top_k!r} must be an integer >= 0 (0 disables top-k filtering)."
            )
        if not 0.0 <= self.top_p <= 1.0:
            raise SamplingConfigError(
                f"top_p={self.top_p} must be in [0, 1] (0 or 1 disables nucleus filtering)."
            )
        if not math.isfinite(self.cfg_scale):
            raise SamplingConfigError(
                f"cfg_scale={self.cfg_scale} must be a finite number (1 disables guidance)."
            )
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise SamplingConfigError(
                f"seed={self.seed!r} must be an integer, or None to draw from torch's global generator."
            )

    @property
    def greedy(self) -> bool:
        """True for argmax decoding (``temperature == 0``)."""
        return self.temperature == 0.0

    def generator(self, device: torch.device | str | None = None) -> torch.Generator | None:
        """The random generator a decoding call draws from.

        Args:
            device: Device of the logits that are sampled.

        Returns:
            None when greedy (nothing is drawn) or ``seed`` is None (torch's global generator); otherwise a fresh
            ``torch.Generator(device)`` seeded with ``seed``.
        """
        if self.greedy or self.seed is None:
            return None
        return torch.Generator(device=device if device is not None else "cpu").manual_seed(self.seed)

    def generators(
        self, batch: int, device: torch.device | str | None = None
    ) -> list[torch.Generator] | None:
        """One fresh generator per sequence of a batch (see ``seed``): row b of every step draws from the b-th,
        so what a sequence draws does not depend on the other rows.

        Args:
            batch: Number of sequences B.
            device: Device of the logits that are sampled.

        Returns:
            None when greedy or ``seed`` is None (as :meth:`generator`); otherwise B generators seeded with ``seed``.
        """
        if self.greedy or self.seed is None:
            return None
        return [self.generator(device) for _ in range(batch)]

    def probabilities(self, logits: Tensor) -> Tensor:
        """The distribution a token is chosen from: ``[..., C]`` logits -> ``[..., C]`` probabilities.

        The softmax at ``temperature`` when sampling and at 1 when greedy, before any top-k / top-p filtering.
        """
        return (logits if self.greedy else logits / self.temperature).softmax(dim=-1)


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
    sampling: Sampling,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> Tensor:
    """Choose one token id per row of logits.

    Args:
        logits: ``[..., C]`` unnormalised scores.
        sampling: Token choice (greedy: the argmax).
        generator: Random generator of sampled decoding (:meth:`Sampling.generator`, on the logits' device), or
            one per index of the first dimension (:meth:`Sampling.generators`: ``logits[b]`` draws from
            ``generator[b]``); None draws from torch's global generator.

    Returns:
        ``[...]`` long token ids in ``[0, C)``.
    """
    if sampling.greedy:
        return logits.argmax(dim=-1)
    if sampling.temperature != 1.0:
        logits = logits / sampling.temperature
    logits = filter_logits(logits, sampling.top_k, sampling.top_p)
    probs = logits.softmax(dim=-1)
    if generator is None or isinstance(generator, torch.Generator):
        flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
        return flat.view(probs.shape[:-1])
    if len(generator) != probs.shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {probs.shape[0]} rows.")
    rows = [
        torch.multinomial(p.reshape(-1, p.shape[-1]), 1, generator=g).view(p.shape[:-1])
        for p, g in zip(probs, generator, strict=True)
    ]
    return torch.stack(rows)
