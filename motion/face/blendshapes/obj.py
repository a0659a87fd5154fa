"""Blendshape rigs from a folder of Wavefront OBJ sculpts: ``neutral.obj`` plus one OBJ per target.

Each target file is the whole mesh in that target's pose, with the neutral's vertices in the same order (as DCC
tools write a shape key or a blendshape target as its own mesh); its name (without ``.obj``) is the target name, so
``jawOpen.obj`` or ``JawOpen.obj`` becomes the target ``jawOpen`` / ``JawOpen``. Deltas are target minus neutral.
Faces come from the neutral only; quads and n-gons are split into triangles as fans from their first corner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from motion.face.blendshapes.errors import RigFormatError, RigNotFoundError
from motion.face.blendshapes.rig import BlendshapeRig

__all__ = ["load_obj_folder", "read_obj"]

_LAYOUT = "the folder must hold neutral.obj and one OBJ per target named after it (e.g. jawOpen.obj)"


def read_obj(path: Path, with_faces: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The vertices ``[V,3]`` (float64) and fan-triangulated faces ``[F,3]`` (int64, 0-based) of an OBJ file.

    Reads ``v x y z [w | r g b]`` and ``f a b c ...`` with ``v``, ``v/vt``, ``v//vn`` or ``v/vt/vn`` corners;
    negative indices count back from the last vertex read so far, as the OBJ format defines.
    """
    vertices: list[list[float]] = []
    faces: list[list[int]] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise RigFormatError(f"'{path}' cannot be read ({exc}); check its permissions.") from None
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "v":
                vertices.append([float(parts[1]), float(parts[2]), float(parts[3])])
            elif parts[0] == "f" and with_faces:
                corners = [int(c.split("/", 1)[0]) for c in parts[1:]]
                corners = [c - 1 if c > 0 else len(vertices) + c for c in corners]
                faces.extend([corners[0], corners[i], corners[i + 1]] for i in range(1, len(corners) - 1))
        except (ValueError, IndexError):
            raise RigFormatError(
                f"'{path}' line {number} is not a valid OBJ '{parts[0]}' line: {line.strip()[:60]!r}; re-export it."
            ) from None
    v = np.asarray(vertices, np.float64).reshape(-1, 3)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise RigFormatError(
            f"'{path}' has faces that index vertices outside its {len(v)} vertices; re-export it."
        )
    return v, f


def load_obj_folder(folder: str | Path) -> BlendshapeRig:
    """Read ``neutral.obj`` and every other ``*.obj`` in ``folder`` (targets sorted by file name).

    Args:
        folder: the directory of OBJ files.

    Raises:
        RigNotFoundError: the folder or its neutral.obj does not exist.
        RigFormatError: no target OBJs, an unreadable OBJ, or a target whose vertex count differs from the neutral
            (the message names that file).
    """
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise RigNotFoundError(f"rig folder not found: '{d}'; {_LAYOUT}.")
    objs = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() == ".obj")
    neutral_path = next((p for p in objs if p.stem.lower() == "neutral"), None)
    if neutral_path is None:
        raise RigNotFoundError(f"'{d}' has no neutral.obj; {_LAYOUT}.")
    targets = [p for p in objs if p is not neutral_path]
    if not targets:
        raise RigFormatError(f"'{d}' holds neutral.obj but no target OBJ; {_LAYOUT}.")
    neutral, faces = read_obj(neutral_path)
    if len(neutral) == 0:
        raise RigFormatError(f"'{neutral_path}' has no vertices ('v' lines); export the neutral mesh as OBJ.")
    deltas = np.empty((len(targets), len(neutral), 3), np.float32)
    for k, p in enumerate(targets):
        v, _ = read_obj(p, with_faces=False)
        if v.shape != neutral.shape:
            raise RigFormatError(
                f"'{p}' has {len(v)} vertices but neutral.obj has {len(neutral)}; every target must be the neutral "
                "mesh with moved vertices (same count and order): re-export it from the same mesh."
            )
        deltas[k] = v - neutral
    return BlendshapeRig(
        neutral.astype(np.float32), deltas, [p.stem for p in targets], faces if faces.size else None
    )
