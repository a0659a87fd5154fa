"""Face models, motion tokenizers and generators (pure torch; no Lightning)."""

from motion.face_model import FaceModel, FaceModelOutput
from motion.flame import FLAME, FLAMEParams
from motion.flame_io import (
    FlameModelFormatError,
    FlameModelNotFoundError,
    load_flame_masks,
    load_flame_model,
    load_landmark_embedding,
)
from motion.lm import LMOutput, MotionLM
from motion.patterns import Pattern
from motion.procedural_face import (
    EXPRESSION_NAMES,
    ProceduralFace,
    ProceduralFacePaths,
    build_procedural_face,
    write_procedural_face,
)
from motion.quantizer import QuantizedResult, ResidualVQ, VectorQuantizer
from motion.regressor import FaceFormerRegressor
from motion.tokenizer import MotionTokenizer, TokenizerOutput

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
