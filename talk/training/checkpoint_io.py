"""Checkpoint I/O that never leaves a half-written checkpoint behind.

Lightning's default writes straight to the destination; a run killed mid-write (pre-emption, Ctrl-C, full disk)
then leaves a truncated ``last.ckpt`` that breaks ``--ckpt_path last``. Here the checkpoint is written through
:func:`talk.files.atomic_write`: a temporary file in the same directory, flushed to disk, moved into place with
an atomic rename. Resuming (``--ckpt_path``) reads with ``torch.load(weights_only=True)`` whatever the caller
asks: a talk checkpoint holds tensors and plain Python only, so a crafted file cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from talk.files import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with write-to-temp + fsync + ``os.replace``, and safe reading."""

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        where = {} if map_location is None else {"map_location": map_location}
        return super().load_checkpoint(path, weights_only=True, **where)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        with atomic_write(path) as f:
            torch.save(checkpoint, f)
