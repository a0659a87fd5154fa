"""Mesh-sequence export for Blender / MeshLab users: one OBJ or PLY per frame, or one npz of the whole sequence.

Layout of ``out_dir``:

* ``fmt="obj"`` / ``"ply"``: ``frame_00000.obj``, ``frame_00001.obj``, ... (trimesh writers; vertex order and
  faces exactly as given, nothing merged or removed, so frame k's vertex i is vertex i of the face model; read
  them back with ``trimesh.load(path, process=False, maintain_order=True)``, since trimesh's OBJ reader
  otherwise drops vertices that no face uses);
* ``fmt="npz"``: ``meshes.npz`` with ``vertices`` float32 ``[T,V,3]``, ``faces`` int32 ``[F,3]`` and, when
  given, ``fps`` (a float64 scalar).

Every file is written to a hidden temporary name in ``out_dir`` and renamed into place, so an interrupted export
never leaves a truncated file under a final name. trimesh is imported lazily.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Literal

import numpy as np
from torch import Tensor

from talk.errors import UserError
from talk.files import write_bytes_atomic

__all__ = ["MeshExportError", "export_meshes", "NPZ_NAME"]

NPZ_NAME = "meshes.npz"
_FRAME = re.compile(r"^frame_\d{5,}\.(obj|ply)$")


class MeshExportError(UserError, ValueError):
    """Invalid input or output directory for :func:`export_meshes`."""


def _as_numpy(value: Tensor | np.ndarray, name: str) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as err:
        raise MeshExportError(f"export_meshes: `{name}` must be an array or tensor ({err}).") from None


def _existing_outputs(out_dir: Path) -> list[Path]:
    """Files in ``out_dir`` that a previous export (of any format) would have written."""
    if not out_dir.is_dir():
        return []
    return sorted(
        p for p in out_dir.iterdir() if p.is_file() and (_FRAME.match(p.name) or p.name == NPZ_NAME)
    )


def _mesh_bytes(vertices: np.ndarray, faces: np.ndarray, fmt: str) -> bytes:
    import trimesh  # lazy: only exports need it

    # process=False keeps every vertex (no merging of duplicates, no removal of unreferenced ones).
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    if fmt == "obj":
        # No normals or texture: the rows are exactly the face model's vertices; 8 decimals is 10 nm in metres.
        text = trimesh.exchange.obj.export_obj(mesh, include_normals=False, include_texture=False, digits=8)
        return text.encode("utf-8")
    return trimesh.exchange.ply.export_ply(mesh, encoding="binary", include_attributes=False)


def export_meshes(
    vertices: Tensor | np.ndarray,
    faces: Tensor | np.ndarray,
    out_dir: str | Path,
    fmt: Literal["obj", "ply", "npz"] = "obj",
    fps: float | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write a mesh sequence to ``out_dir`` (layout in the module docstring).

    Args:
        vertices: ``[T,V,3]`` vertex positions (``[V,3]`` is one frame).
        faces: ``[F,3]`` integer vertex indices.
        out_dir: output directory, created if missing.
        fmt: ``"obj"`` or ``"ply"`` (one file per frame) or ``"npz"`` (one file).
        fps: frame rate stored in the npz (ignored by OBJ / PLY, which have no notion of time).
        overwrite: replace the files of a previous export in ``out_dir``; every earlier ``frame_*.obj|ply`` and
            ``meshes.npz`` there is removed first, so no stale frames of a longer sequence survive.

    Returns:
        The written paths, in frame order.

    Raises:
        MeshExportError: bad shapes or values, or ``out_dir`` already holds an export and ``overwrite`` is False.
    """
    if fmt not in ("obj", "ply", "npz"):
        raise MeshExportError(f"export_meshes: `fmt` must be 'obj', 'ply' or 'npz', got {fmt!r}.")
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise MeshExportError(f"export_meshes: `fps` must be a positive number, got {fps}.")
    verts = _as_numpy(vertices, "vertices")
    if verts.ndim == 2:
        verts = verts[None]
    if verts.ndim != 3 or verts.shape[-1] != 3 or verts.shape[0] == 0 or verts.shape[1] == 0:
        raise MeshExportError(
            f"export_meshes: `vertices` must be [T,V,3] with T, V > 0, got shape {verts.shape}."
        )
    if not np.issubdtype(verts.dtype, np.number) or not np.isfinite(verts).all():
        raise MeshExportError(
            "export_meshes: `vertices` must be finite numbers (found NaN, inf or non-numbers)."
        )
    tris = _as_numpy(faces, "faces")
    if tris.ndim != 2 or tris.shape[1] != 3 or not np.issubdtype(tris.dtype, np.integer):
        raise MeshExportError(
            f"export_meshes: `faces` must be an integer [F,3] array, got {tris.dtype} {tris.shape}."
        )
    if tris.size and (tris.min() < 0 or tris.max() >= verts.shape[1]):
        raise MeshExportError(f"export_meshes: `faces` index vertices outside [0, {verts.shape[1]}).")

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MeshExportError(f"export_meshes: {out} exists and is not a directory; pass a directory path.")
    existing = _existing_outputs(out)
    if existing and not overwrite:
        raise MeshExportError(
            f"export_meshes: {out} already holds an export ({existing[0].name}, ...); pass overwrite=True "
            "(--overwrite) to replace it or choose an empty directory."
        )
    out.mkdir(parents=True, exist_ok=True)
    for path in existing:
        path.unlink()

    verts32 = verts.astype(np.float32)
    tris = tris.astype(np.int64)
    if fmt == "npz":
        payload = {"vertices": verts32, "faces": tris.astype(np.int32)}
        if fps is not None:
            payload["fps"] = np.float64(fps)
        buffer = io.BytesIO()
        np.savez(buffer, **payload)
        path = out / NPZ_NAME
        write_bytes_atomic(path, buffer.getvalue())
        return [path]
    written = []
    for t in range(verts32.shape[0]):
        path = out / f"frame_{t:05d}.{fmt}"
        write_bytes_atomic(path, _mesh_bytes(verts32[t], tris, fmt))
        written.append(path)
    return written
