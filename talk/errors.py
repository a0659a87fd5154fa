"""User-facing errors: one sentence naming what is wrong and how to fix it.

The CLI prints these as a single line and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class TalkError(Exception):
    """Base class for errors caused by the user's input (files, arguments, checkpoints)."""


class DatasetError(TalkError, ValueError):
    """A dataset on disk is missing files, has mismatched shapes, or does not follow its published layout."""


class CheckpointError(TalkError, ValueError):
    """A checkpoint cannot be used for the requested operation."""
