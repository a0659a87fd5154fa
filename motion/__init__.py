"""Face models, motion tokenizers and generators (pure torch; no Lightning), one sub-package per concept.

- :mod:`motion.face`: face models behind one interface (FLAME, the procedural FLAME-format head).
- :mod:`motion.tokens`: residual VQ and the motion tokenizer (motion <-> discrete codes).
- :mod:`motion.lm`: the motion language model over those codes.
- :mod:`motion.regression`: the FaceFormer-style continuous regressor.
"""

from motion import face, tokens
from motion.face import *  # noqa: F403 - the face models, listed in motion.face.__all__
from motion.lm import LMOutput, MotionLM, Pattern
from motion.regression import FaceFormerRegressor
from motion.tokens import *  # noqa: F403 - residual VQ and the tokenizer, listed in motion.tokens.__all__

# ``motion.MotionLM`` etc. are class paths that configs and checkpoints name.
__all__ = [*face.__all__, *tokens.__all__, "FaceFormerRegressor", "LMOutput", "MotionLM", "Pattern"]
