"""Datasets and DataModules: the :class:`TalkDataModule` base, its formats, and the batch they yield."""

from __future__ import annotations

from talk.data.base import TalkDataModule
from talk.data.batch import Batch, Sample, collate
from talk.data.formats.biwi import BiwiDataModule
from talk.data.formats.manifest import ManifestDataModule
from talk.data.formats.vocaset import VocasetDataModule
from talk.data.formats.vocaset_raw import ConversionSummary, convert_vocaset

__all__ = [
    "Batch",
    "BiwiDataModule",
    "ConversionSummary",
    "ManifestDataModule",
    "Sample",
    "TalkDataModule",
    "VocasetDataModule",
    "collate",
    "convert_vocaset",
]
