"""Codebook interleaving patterns for autoregressive generation over residual-VQ codes (MusicGen style).

A residual-VQ tokenizer gives K codes per token frame. The language model predicts one *step* at a time and
every step emits one token per codebook; a pattern says which (frame, codebook) each of those tokens is:

- ``parallel``: codebook k of frame q is predicted at step q. S = Tq steps; all codebooks of a frame are
  sampled together, so the finer codebooks cannot condition on the coarse code of the same frame.
- ``delay``: codebook k of frame q is predicted at step q + k (MusicGen's delay pattern). S = Tq + K - 1 steps;
  codebook k of frame q sees codebooks < k of frame q in its input, at the price of K - 1 extra steps before a
  frame is complete.

Positions of the step grid that hold no code (the ramps of the delay pattern) carry a special token id equal to
the codebook size C, so the model has one extra embedding per codebook for "nothing here".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from talk.errors import UserError

PATTERN_KINDS = ("parallel", "delay")


class PatternError(UserError, ValueError):
    """Raised when a pattern is configured or used with inconsistent arguments."""


@dataclass(frozen=True)
class PatternSequence:
    """Codes laid out on the step grid.

    Attributes:
        sequence: ``[B, K, S]`` long; code ids in ``[0, C)`` at valid positions, ``C`` elsewhere.
        mask: ``[K, S]`` bool, True where the position holds a code of a frame in ``[0, Tq)``.

    Unpacks like a pair: ``sequence, mask = pattern.build(codes)``.
    """

    sequence: Tensor
    mask: Tensor

    def __iter__(self) -> Iterator[Tensor]:
        return iter((self.sequence, self.mask))


class Pattern:
    """Maps codes ``[B, K, Tq]`` to a step sequence ``[B, K, S]`` and back.

    Args:
        kind: ``"parallel"`` (codebook k of frame q at step q) or ``"delay"`` (at step q + k).
        num_codebooks: Number of residual codebooks K.
        codebook_size: Codebook size C; the id C marks positions that hold no code.
    """

    def __init__(self, kind: str = "delay", num_codebooks: int = 4, codebook_size: int = 256) -> None:
        if kind not in PATTERN_KINDS:
            raise PatternError(f"pattern={kind!r} is not known; use one of {', '.join(PATTERN_KINDS)}.")
        if num_codebooks < 1:
            raise PatternError(f"num_codebooks={num_codebooks} must be at least 1.")
        if codebook_size < 1:
            raise PatternError(f"codebook_size={codebook_size} must be at least 1.")
        self.kind = kind
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.special_token = codebook_size
        # Step offset of each codebook; non-decreasing, so the valid codebooks of any step form one range.
        self.delays: tuple[int, ...] = (
            tuple(range(num_codebooks)) if kind == "delay" else (0,) * num_codebooks
        )
        self.max_delay = max(self.delays)

    def __repr__(self) -> str:
        return (
            f"Pattern({self.kind!r}, num_codebooks={self.num_codebooks}, codebook_size={self.codebook_size})"
        )

    def num_steps(self, num_frames: int) -> int:
        """Number of steps S needed for ``num_frames`` token frames (0 frames need 0 steps)."""
        return num_frames + self.max_delay if num_frames > 0 else 0

    def num_frames(self, num_steps: int) -> int:
        """Inverse of :meth:`num_steps`."""
        return max(num_steps - self.max_delay, 0)

    def step_of(self, frame: int, codebook: int) -> int:
        """Step at which codebook ``codebook`` of token frame ``frame`` is predicted."""
        if not 0 <= codebook < self.num_codebooks:
            raise PatternError(f"codebook={codebook} is outside [0, {self.num_codebooks}).")
        return frame + self.delays[codebook]

    def frames_complete_after(self, step: int, num_frames: int | None = None) -> int:
        """Number of token frames whose K codes are all decided once steps ``0..step`` are done.

        Args:
            step: Index of the last finished step (-1: none yet).
            num_frames: Tq if known; caps the count.
        """
        done = max(step + 1 - self.max_delay, 0)
        return done if num_frames is None else min(done, num_frames)

    def valid_mask(self, num_frames: int, device: torch.device | str | None = None) -> Tensor:
        """``[K, S]`` bool, True where step s holds codebook k of a frame in ``[0, Tq)``."""
        steps = torch.arange(self.num_steps(num_frames), device=device)
        frame = steps[None, :] - torch.tensor(self.delays, device=device)[:, None]
        return (frame >= 0) & (frame < num_frames)

    def build(self, codes: Tensor) -> PatternSequence:
        """Lay codes out on the step grid.

        Args:
            codes: ``[B, K, Tq]`` integer codes (values are copied as they are, so a code equal to C marks a
                padded frame as empty).

        Returns:
            ``PatternSequence(sequence [B, K, S], mask [K, S])``.
        """
        if codes.dim() != 3 or codes.shape[1] != self.num_codebooks:
            raise PatternError(
                f"codes must be [B, K={self.num_codebooks}, Tq]; got shape {tuple(codes.shape)}."
            )
        b, k, tq = codes.shape
        sequence = codes.new_full((b, k, self.num_steps(tq)), self.special_token)
        for cb, delay in enumerate(self.delays):
            sequence[:, cb, delay : delay + tq] = codes[:, cb]
        return PatternSequence(sequence, self.valid_mask(tq, codes.device))

    def revert(self, sequence: Tensor) -> Tensor:
        """Read codes back from the step grid: ``[B, K, S]`` -> ``[B, K, Tq]`` with Tq = S - max delay."""
        if sequence.dim() != 3 or sequence.shape[1] != self.num_codebooks:
            raise PatternError(
                f"sequence must be [B, K={self.num_codebooks}, S]; got shape {tuple(sequence.shape)}."
            )
        if 0 < sequence.shape[-1] <= self.max_delay:
            raise PatternError(
                f"a {self.kind} sequence needs more than {self.max_delay} steps; got {sequence.shape[-1]}."
            )
        tq = self.num_frames(sequence.shape[-1])
        return torch.stack([sequence[:, cb, d : d + tq] for cb, d in enumerate(self.delays)], dim=1)
