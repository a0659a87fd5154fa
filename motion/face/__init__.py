"""Face models behind one interface (parameters -> vertices ``[B, T, V, 3]``, landmarks).

- :mod:`motion.face.base`: ``FaceModel``, the interface, and its result ``FaceModelOutput``.
- :mod:`motion.face.flame`: ``FLAME`` (linear blend skinning) and its parameters ``FLAMEParams``.
- :mod:`motion.face.flame_io`: loading FLAME model / mask / landmark files, with one-sentence errors.
- :mod:`motion.face.procedural`: the licence-free procedural head written in the FLAME file format.
- :mod:`motion.face.blendshapes`: ``BlendshapeRig`` and ``ArkitRig`` (ARKit-52 avatars: glTF / OBJ / npz), the
  weight solver and exports.
- :mod:`motion.face.bfm` (over :mod:`motion.face.bfm_io`): the Basel Face Model in Deep3DFaceRecon's
  ``BFM_model_front.mat`` layout with its 257 coefficients and SH lighting.

Every face model that token models can work in gives ``motion_kind``, ``num_motion_params``, ``motion_offsets``
and ``constrain`` (:class:`motion.face.base.FaceModel`).
"""

from motion.face.base import FaceModel, FaceModelOutput
from motion.face.bfm import BFM, BFMCoeffs, split_coeffs
from motion.face.bfm_io import BFMFormatError, BFMNotFoundError, load_bfm_mat, save_bfm_mat
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
    "BFM",
    "BFMCoeffs",
    "BFMFormatError",
    "BFMNotFoundError",
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
    "load_bfm_mat",
    "load_flame_masks",
    "load_flame_model",
    "load_landmark_embedding",
    "save_bfm_mat",
    "split_coeffs",
    "write_procedural_face",
]
