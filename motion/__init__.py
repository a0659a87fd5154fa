"""Face models, motion tokenizers and generators (pure torch; no Lightning), one sub-package per concept.

- :mod:`motion.face`: face models behind one interface (FLAME, the procedural FLAME-format head).
- :mod:`motion.tokens`: residual VQ and the motion tokenizer (motion <-> discrete codes).
- :mod:`motion.lm`: the motion language model over those codes.
- :mod:`motion.regression`: the FaceFormer-style continuous regressor.
"""

from motion.face import (
    EXPRESSION_NAMES,
    FLAME,
    FaceModel,
    FaceModelOutput,
    FlameModelFormatError,
    FlameModelNotFoundError,
    FLAMEParams,
    ProceduralFace,
    ProceduralFacePaths,
    build_procedural_face,
    load_flame_masks,
    load_flame_model,
    load_landmark_embedding,
    write_procedural_face,
)
from motion.lm import LMOutput, MotionLM
from motion.lm.patterns import (
    Pattern,  # motion.lm's own exports are its maintainer's; this keeps motion.Pattern
)
from motion.regression import FaceFormerRegressor
from motion.tokens import MotionTokenizer, QuantizedResult, ResidualVQ, TokenizerOutput, VectorQuantizer

__all__ = [
    "EXPRESSION_NAMES",
    "FaceFormerRegressor",
    "LMOutput",
    "MotionLM",
    "MotionTokenizer",
    "Pattern",
    "QuantizedResult",
    "ResidualVQ",
    "TokenizerOutput",
    "VectorQuantizer",
    "FLAME",
    "FLAMEParams",
    "FaceModel",
    "FaceModelOutput",
    "FlameModelFormatError",
    "FlameModelNotFoundError",
    "ProceduralFace",
    "ProceduralFacePaths",
    "build_procedural_face",
    "load_flame_masks",
    "load_flame_model",
    "load_landmark_embedding",
    "write_procedural_face",
]
