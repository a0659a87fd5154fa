"""User-facing errors: one sentence naming what is wrong and how to fix it.

Every error caused by the user's input derives from :class:`UserError`, in every package (``audio``, ``motion``,
``render`` and ``talk``): the CLI catches that one class, prints its message as a single line and exits non-zero;
anything else is a bug and keeps its traceback. This module imports nothing, so the pure packages may import it
without depending on the rest of ``talk``.
"""

from __future__ import annotations


class UserError(Exception):
    """Base class of every error caused by the user's input (files, arguments, checkpoints, configs)."""


# The historical name of the base class, kept for code written against it.
TalkError = UserError


class DatasetError(UserError, ValueError):
    """A dataset on disk is missing files, has mismatched shapes, or does not follow its published layout."""


class CheckpointError(UserError, ValueError):
    """A checkpoint cannot be used for the requested operation."""
