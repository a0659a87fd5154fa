"""Face models, motion tokenizers and generators (pure torch; no Lightning)."""

from motion.face.base import FaceModel, FaceModelOutput
from motion.face.flame import FLAME, FLAMEParams
from motion.face.flame_io import (
    FlameModelFormatError,
    FlameModelNotFoundError,
    load_flame_masks,
    load_flame_model,
    load_landmark_embedding,
)
from motion.face.procedural.face import (
    EXPRESSION_NAMES,
    ProceduralFace,
    ProceduralFacePaths,
    build_procedural_face,
    write_procedural_face,
)
from motion.lm.model import LMOutput, MotionLM
from motion.lm.patterns import Pattern
from motion.regression.regressor import FaceFormerRegressor
from motion.tokens.quantizer import QuantizedResult, ResidualVQ, VectorQuantizer
from motion.tokens.tokenizer import MotionTokenizer, TokenizerOutput

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
