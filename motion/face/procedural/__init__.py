"""The procedural FLAME-format head: a licence-free stand-in for FLAME with the same file structure.

- :mod:`~motion.face.procedural.geometry`: the signed-distance head and the rays its surface is sampled along.
- :mod:`~motion.face.procedural.mesh`: the mesh (vertices, faces, parts) built from that geometry.
- :mod:`~motion.face.procedural.rig`: skinning weights, joints, shape / expression bases, correctives, regions.
- :mod:`~motion.face.procedural.face`: ``ProceduralFace`` (the model as FLAME's pickles hold it) and its writer.
"""

from motion.face.procedural.face import (
    EXPRESSION_NAMES,
    ProceduralFace,
    ProceduralFacePaths,
    build_procedural_face,
    write_procedural_face,
)

__all__ = [
    "EXPRESSION_NAMES",
    "ProceduralFace",
    "ProceduralFacePaths",
    "build_procedural_face",
    "write_procedural_face",
]
