"""Blendshape rigs: a neutral mesh plus named target deltas (ARKit-52 avatars), and their loaders.

- :mod:`.rig`: ``BlendshapeRig`` (weights ``[B,T,K]`` -> vertices ``[B,T,V,3]``), ``ReorderedRig``, ``.npz`` files.
- :mod:`.arkit`: the 52 ARKit names in Apple's order, and the name matching that ``to_arkit`` uses.
- :mod:`.gltf` (over :mod:`.gltf_io`): glTF 2.0 / GLB morph targets; :mod:`.obj`: a folder of OBJ targets.
- :mod:`.load`: ``load_rig`` picks the loader from the path.
- :mod:`.model`: ``ArkitRig``, a rig file in ARKit-52 order as a face model whose weights are a token model's motion.
- :mod:`.procedural`: ``procedural_arkit_rig``, the 52 ARKit targets on the procedural head (``UNSUPPORTED_TARGETS``
  are zero deltas) (``talk.contact_sheet.render_contact_sheet`` draws a labelled PNG of a rig's targets).
- :mod:`.solve`: ``solve_weights`` / ``BlendshapeSolver``, bounded and smoothed weights for any vertex motion in a
  rig's topology, and ``reconstruction_error``.
"""

from motion.face.blendshapes.arkit import ARKIT_NAMES, arkit_name, name_key
from motion.face.blendshapes.errors import RigDependencyError, RigFormatError, RigNotFoundError
from motion.face.blendshapes.gltf import load_gltf
from motion.face.blendshapes.load import load_rig
from motion.face.blendshapes.model import ArkitRig
from motion.face.blendshapes.obj import load_obj_folder
from motion.face.blendshapes.procedural import UNSUPPORTED_TARGETS, procedural_arkit_rig
from motion.face.blendshapes.rig import BlendshapeRig, ReorderedRig, load_npz
from motion.face.blendshapes.solve import (
    BlendshapeSolver,
    Reconstruction,
    SolveResult,
    reconstruction_error,
    solve_weights,
)

__all__ = [
    "ARKIT_NAMES",
    "ArkitRig",
    "UNSUPPORTED_TARGETS",
    "BlendshapeRig",
    "BlendshapeSolver",
    "Reconstruction",
    "ReorderedRig",
    "RigDependencyError",
    "RigFormatError",
    "RigNotFoundError",
    "SolveResult",
    "arkit_name",
    "load_gltf",
    "load_npz",
    "load_obj_folder",
    "load_rig",
    "name_key",
    "procedural_arkit_rig",
    "reconstruction_error",
    "solve_weights",
]
