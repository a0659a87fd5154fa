"""The model that ships with ``talk``: ``talk animate --audio my.wav`` uses it when no ``--checkpoint`` is given.

``default.pt`` is ``talk export`` of ``experiments/speech/phonetic.yaml`` trained by ``make demo`` (how it was made and
what it measures: ``README.md`` here). Load it in Python with
``talk.pipeline.Pipeline.from_checkpoint(talk.pretrained.DEFAULT_MODEL)``.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = Path(__file__).with_name("default.pt")

__all__ = ["DEFAULT_MODEL", "default_model"]


def default_model() -> Path:
    """:data:`DEFAULT_MODEL`, or a one-line error when the installation lacks it (what ``--checkpoint`` defaults to)."""
    from talk.errors import UserError

    if not DEFAULT_MODEL.is_file():
        raise UserError(
            f"the default model {DEFAULT_MODEL} is missing from this installation; reinstall talk, or pass "
            "--checkpoint with a model you trained (talk fit)."
        )
    return DEFAULT_MODEL
