"""The motion language model: MotionLM, its codebook patterns, its sampling contract and its result types."""

from motion.lm.inputs import MotionLMConfigError, MotionLMInputError
from motion.lm.model import MotionLM
from motion.lm.outputs import Generation, LMLoss, LMOutput
from motion.lm.patterns import Pattern, PatternError
from motion.lm.sampling import Sampling, SamplingConfigError

__all__ = [
    "Generation",
    "LMLoss",
    "LMOutput",
    "MotionLM",
    "MotionLMConfigError",
    "MotionLMInputError",
    "Pattern",
    "PatternError",
    "Sampling",
    "SamplingConfigError",
]
