"""Datasets and DataModules."""

from talk.data.batch import Batch, Sample, collate
from talk.data.vocaset import VocasetDataModule

__all__ = ["Batch", "Sample", "VocasetDataModule", "collate"]
