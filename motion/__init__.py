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
from motion.procedural_face import (
    EXPRESSION_NAMES,
    ProceduralFace,
    ProceduralFacePaths,
    build_procedural_face,
    write_procedural_face,
)

__all__ = [
    "EXPRESSION_NAMES",
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
