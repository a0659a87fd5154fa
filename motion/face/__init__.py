"""Face models behind one interface (parameters -> vertices ``[B, T, V, 3]``, landmarks).

- :mod:`motion.face.base`: ``FaceModel``, the interface, and its result ``FaceModelOutput``.
- :mod:`motion.face.flame`: ``FLAME`` (linear blend skinning) and its parameters ``FLAMEParams``.
- :mod:`motion.face.flame_io`: loading FLAME model / mask / landmark files, with one-sentence errors.
- :mod:`motion.face.procedural`: the licence-free procedural head written in the FLAME file format.
"""

from motion.face.base import FaceModel, FaceModelOutput
from motion.face.flame import FLAME, FLAMEParams
from motion.face.flame_io import (
    FlameModelFormatError,
    FlameModelNotFoundError,
    load_flame_masks,
    load_flame_model,
    load_landmark_embedding,
)
from motion.face.procedural import (
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
