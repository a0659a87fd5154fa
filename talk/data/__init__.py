"""Datasets and DataModules.

Imports are lazy so that light users (the synthetic-data writer and its worker processes) do not pay for
importing Lightning.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Batch": "talk.data.batch",
    "Sample": "talk.data.batch",
    "collate": "talk.data.batch",
    "VocasetDataModule": "talk.data.formats.vocaset",
    "BiwiDataModule": "talk.data.formats.biwi",
    "ManifestDataModule": "talk.data.formats.manifest",
    "convert_vocaset": "talk.data.formats.vocaset_raw",
    "ConversionSummary": "talk.data.formats.vocaset_raw",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'talk.data' has no attribute {name!r}")
