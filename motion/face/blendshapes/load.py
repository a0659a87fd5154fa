"""``load_rig``: a blendshape rig from any supported file, chosen by what the path is."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from motion.face.blendshapes.errors import RigFormatError, RigNotFoundError
from motion.face.blendshapes.gltf import load_gltf
from motion.face.blendshapes.obj import load_obj_folder
from motion.face.blendshapes.rig import BlendshapeRig, load_npz

__all__ = ["load_rig"]

_KINDS = "a .glb / .gltf file (morph targets), a rig .npz, or a folder of OBJs (neutral.obj + one per target)"


def load_rig(path: str | Path, mesh: str | Sequence[str] | None = None) -> BlendshapeRig:
    """Read a rig: a folder -> :func:`load_obj_folder`; ``.glb`` / ``.gltf`` -> :func:`load_gltf` (with its scene
    transform); ``.npz`` -> :func:`load_npz`. Targets stay in the file's order (``.to_arkit()`` reorders).

    Args:
        path: the rig file or folder.
        mesh: glTF only: the mesh name(s) to read (see :func:`load_gltf`); None merges the meshes sharing targets.

    Raises:
        RigNotFoundError: nothing exists at ``path``.
        RigFormatError: a file of another kind, or one of the loaders' errors.
    """
    p = Path(path).expanduser()
    if mesh is not None and (p.is_dir() or p.suffix.lower() not in (".glb", ".gltf")):
        raise RigFormatError(f"mesh={mesh!r} applies to glTF files only, and '{p}' is not one; drop mesh=.")
    if p.is_dir():
        return load_obj_folder(p)
    if not p.exists():
        raise RigNotFoundError(f"rig not found: '{p}'; pass {_KINDS}.")
    suffix = p.suffix.lower()
    if suffix in (".glb", ".gltf"):
        return load_gltf(p, mesh=mesh)
    if suffix == ".npz":
        return load_npz(p)
    raise RigFormatError(f"'{p}' is not a rig file talk reads (suffix '{p.suffix}'); pass {_KINDS}.")
