"""LightningModules."""

from talk.models.audio_to_motion import AudioToMotionModule
from talk.models.base import TalkModule
from talk.models.regression import RegressionModule
from talk.models.tokenizer import TokenizerModule

__all__ = ["AudioToMotionModule", "RegressionModule", "TalkModule", "TokenizerModule"]
