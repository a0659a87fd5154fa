"""Readers of the files that describe a dataset's meshes: neutral templates, triangles and metric regions.

Every DataModule reads these through the same functions, so a templates pickle, a FLAME file, a mesh file or a
region file means the same thing (and fails with the same message) whichever dataset it belongs to.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from talk.errors import DatasetError


def load_templates(path: Path) -> dict[str, np.ndarray]:
    """Reads ``templates.pkl`` ({subject: [V, 3]}, written by Python 2 in the original release, hence latin1).

    The pickle is read by the restricted unpickler of :mod:`motion.face.pickles` (numpy data only): a file that
    names any other global is refused, and nothing it names runs.

    Returns:
        Subject -> float32 neutral mesh ``[V, 3]``.
    """
    from motion.face.pickles import UnsafePickleError, load_pickle, refusal_message, to_plain

    if not path.is_file():
        raise DatasetError(
            f"templates file {path} not found; the processed layout needs <root>/templates.pkl."
        )
    try:
        templates = to_plain(load_pickle(path))
    except UnsafePickleError as exc:
        raise DatasetError(refusal_message(path, "templates", exc)) from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the file is not a templates pickle
        raise DatasetError(
            f"{path} is not a readable templates pickle ({type(exc).__name__}: {exc})."
        ) from None
    if not isinstance(templates, dict) or not templates:
        raise DatasetError(f"{path} must hold a non-empty dict subject -> [V, 3] array.")
    out = {}
    for subject, value in templates.items():
        arr = np.asarray(value, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise DatasetError(f"template of '{subject}' in {path} has shape {arr.shape}; expected [V, 3].")
        out[str(subject)] = arr
    return out


def load_faces(path: str | Path, num_vertices: int) -> np.ndarray:
    """Triangles ``[F, 3]`` from a FLAME-format ``.pkl`` (key ``f``) or a mesh file (``.ply``/``.obj``).

    Args:
        path: The file.
        num_vertices: Vertex count of the dataset's meshes (the triangles must index them).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"face model {path} not found; pass data.face_model_path=<FLAME .pkl or mesh .ply/.obj>."
        )
    if path.suffix == ".pkl":
        from motion.face.flame_io import load_flame_model

        try:
            faces = np.asarray(load_flame_model(path)["f"], dtype=np.int64)
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(str(exc)) from None
    else:
        import trimesh

        try:
            # process=False keeps the file's vertex order, which is what the vertex ids refer to
            mesh = trimesh.load(path, process=False, force="mesh")
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(f"{path} is not a readable mesh file ({type(exc).__name__}: {exc}).") from None
        faces = np.asarray(mesh.faces, dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.size == 0:
        raise DatasetError(f"{path} holds no triangles (faces of shape {faces.shape}).")
    if faces.max() >= num_vertices:
        raise DatasetError(
            f"{path} has triangles indexing vertex {int(faces.max())} but the meshes have {num_vertices} "
            "vertices; pass the mesh of this dataset's topology."
        )
    return faces


def load_region_sets(path: str | Path) -> dict[str, np.ndarray]:
    """Reads named vertex sets from a ``FLAME_masks.pkl``-format pickle or a folder of ``<name>.txt`` files.

    A text file holds integer vertex ids separated by commas and/or whitespace (CodeTalker's BIWI
    ``regions/lve.txt`` and ``regions/fdd.txt``); the region is named after the file stem.

    Args:
        path: The pickle, or the folder of text files.

    Returns:
        Region name -> int64 vertex ids ``[N]``.
    """
    path = Path(path)
    if path.is_dir():
        out = {}
        for txt in sorted(path.glob("*.txt")):
            tokens = [t for t in re.split(r"[,\s]+", txt.read_text()) if t]
            try:
                out[txt.stem] = np.asarray([int(t) for t in tokens], dtype=np.int64)
            except ValueError:
                raise DatasetError(
                    f"region file {txt} must hold integer vertex ids separated by commas or spaces."
                ) from None
        if not out:
            raise DatasetError(f"region folder {path} holds no <region>.txt files (e.g. lve.txt, fdd.txt).")
        return out
    if not path.is_file():
        raise DatasetError(
            f"region file {path} not found; pass data.regions_path=<FLAME_masks.pkl or folder of <region>.txt>."
        )
    from motion.face.flame_io import load_flame_masks

    try:
        return load_flame_masks(path)
    except Exception as exc:  # noqa: BLE001 - FlameModelFormatError and friends already name the file
        raise DatasetError(str(exc)) from None


def metric_regions(
    path: str | Path, lip_region: str, upper_face_regions: list[str], num_vertices: int
) -> dict[str, np.ndarray]:
    """The two vertex sets the metrics use: ``{"lips": ids, "upper_face": ids}`` (upper face = union).

    Args:
        path: Region file or folder (see :func:`load_region_sets`).
        lip_region: Region name used for LVE.
        upper_face_regions: Region names whose union is the FDD upper face.
        num_vertices: Vertex count of the meshes; ids must be below it.
    """
    sets = load_region_sets(path)
    missing = [r for r in [lip_region, *upper_face_regions] if r not in sets]
    if missing:
        raise DatasetError(f"{path} has no region(s) {missing}; it holds {sorted(sets)}.")
    for name in [lip_region, *upper_face_regions]:
        ids = sets[name]
        if ids.size == 0:
            raise DatasetError(f"region '{name}' in {path} is empty.")
        if ids.min() < 0 or ids.max() >= num_vertices:
            raise DatasetError(
                f"region '{name}' in {path} has vertex ids up to {int(ids.max())} but the meshes have "
                f"{num_vertices} vertices; the region file belongs to another topology."
            )
    upper = np.unique(np.concatenate([sets[r] for r in upper_face_regions]))
    return {"lips": sets[lip_region].astype(np.int64), "upper_face": upper.astype(np.int64)}
