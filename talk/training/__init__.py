"""LightningModules."""

from talk.training.audio_to_motion import AudioToMotionModule
from talk.training.base import TalkModule
from talk.training.phonetic import PhoneticModule
from talk.training.regression import RegressionModule
from talk.training.tokenizer import TokenizerModule

__all__ = ["AudioToMotionModule", "PhoneticModule", "RegressionModule", "TalkModule", "TokenizerModule"]
