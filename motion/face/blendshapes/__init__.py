"""Blendshape rigs: a neutral mesh plus named target deltas (ARKit-52 avatars), and their loaders.

- :mod:`.rig`: ``BlendshapeRig`` (weights ``[B,T,K]`` -> vertices ``[B,T,V,3]``), ``ReorderedRig``, ``.npz`` files.
- :mod:`.arkit`: the 52 ARKit names in Apple's order, and the name matching that ``to_arkit`` uses.
- :mod:`.gltf` (over :mod:`.gltf_io`): glTF 2.0 / GLB morph targets; :mod:`.obj`: a folder of OBJ targets.
- :mod:`.load`: ``load_rig`` picks the loader from the path.
"""

from motion.face.blendshapes.arkit import ARKIT_NAMES, arkit_name, name_key
from motion.face.blendshapes.errors import RigDependencyError, RigFormatError, RigNotFoundError
from motion.face.blendshapes.gltf import load_gltf
from motion.face.blendshapes.load import load_rig
from motion.face.blendshapes.obj import load_obj_folder
from motion.face.blendshapes.rig import BlendshapeRig, ReorderedRig, load_npz

__all__ = [
    "ARKIT_NAMES",
    "BlendshapeRig",
    "ReorderedRig",
    "RigDependencyError",
    "RigFormatError",
    "RigNotFoundError",
    "arkit_name",
    "load_gltf",
    "load_npz",
    "load_obj_folder",
    "load_rig",
    "name_key",
]
