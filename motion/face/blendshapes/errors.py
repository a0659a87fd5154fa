"""Errors of the blendshape rig loaders: one sentence naming the file and the fix (see :mod:`talk.errors`)."""

from __future__ import annotations

from talk.errors import UserError

__all__ = ["RigDependencyError", "RigFormatError", "RigNotFoundError"]


class RigNotFoundError(UserError, FileNotFoundError):
    """A rig file or folder does not exist."""


class RigFormatError(UserError, ValueError):
    """A rig file exists but cannot be read as a blendshape rig (wrong format, no targets, shapes that disagree)."""


class RigDependencyError(UserError, ImportError):
    """Reading a rig file needs an optional package that is not installed; the message names the pip command."""
