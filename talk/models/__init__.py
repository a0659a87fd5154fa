"""LightningModules."""

from talk.models.base import TalkModule
from talk.models.regression import RegressionModule

__all__ = ["RegressionModule", "TalkModule"]
