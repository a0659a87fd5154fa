"""The motion language model."""

from motion.lm.model import LMOutput, MotionLM

__all__ = ["LMOutput", "MotionLM"]
