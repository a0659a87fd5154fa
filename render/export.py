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

:func:`export_meshes` writes a whole sequence; :class:`MeshSequenceWriter` writes the same files piece by piece, as
frames are generated, so that a long animation is never held in memory at once.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np
from torch import Tensor

from talk.errors import UserError
from talk.files import atomic_write, write_bytes_atomic

__all__ = ["MeshExportError", "MeshSequenceWriter", "export_meshes", "NPZ_NAME"]

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


def _check_vertices(vertices: Tensor | np.ndarray) -> np.ndarray:
    """``[T, V, 3]`` (or one frame ``[V, 3]``) finite vertex positions as float32 ``[T, V, 3]``."""
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
    return verts.astype(np.float32)


def _check_faces(faces: Tensor | np.ndarray) -> np.ndarray:
    tris = _as_numpy(faces, "faces")
    if tris.ndim != 2 or tris.shape[1] != 3 or not np.issubdtype(tris.dtype, np.integer):
        raise MeshExportError(
            f"export_meshes: `faces` must be an integer [F,3] array, got {tris.dtype} {tris.shape}."
        )
    return tris.astype(np.int64)


def _check_face_range(tris: np.ndarray, num_vertices: int) -> None:
    if tris.size and (tris.min() < 0 or tris.max() >= num_vertices):
        raise MeshExportError(f"export_meshes: `faces` index vertices outside [0, {num_vertices}).")


class MeshSequenceWriter:
    """Writes a mesh sequence to ``out_dir`` piece by piece, in :func:`export_meshes`'s layout.

    OBJ / PLY frames are written as their piece arrives. The npz's vertices go to an unnamed temporary file in
    ``out_dir`` (disk, not memory) and become ``meshes.npz`` on :meth:`close`, atomically; a writer left with an
    exception (as a context manager) writes no npz. Directory checks and the removal of a previous export happen
    at construction, before any frame is generated.

    Args:
        faces: ``[F,3]`` integer vertex indices.
        out_dir: output directory, created if missing.
        fmt: ``"obj"`` or ``"ply"`` (one file per frame) or ``"npz"`` (one file).
        fps: frame rate stored in the npz (ignored by OBJ / PLY).
        overwrite: replace the files of a previous export in ``out_dir`` (see :func:`export_meshes`).

    Raises:
        MeshExportError: as :func:`export_meshes`.
    """

    def __init__(
        self,
        faces: Tensor | np.ndarray,
        out_dir: str | Path,
        fmt: Literal["obj", "ply", "npz"] = "obj",
        fps: float | None = None,
        overwrite: bool = False,
    ) -> None:
        if fmt not in ("obj", "ply", "npz"):
            raise MeshExportError(f"export_meshes: `fmt` must be 'obj', 'ply' or 'npz', got {fmt!r}.")
        if fps is not None and not (np.isfinite(fps) and fps > 0):
            raise MeshExportError(f"export_meshes: `fps` must be a positive number, got {fps}.")
        self.faces = _check_faces(faces)
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise MeshExportError(
                f"export_meshes: {out} exists and is not a directory; pass a directory path."
            )
        existing = _existing_outputs(out)
        if existing and not overwrite:
            raise MeshExportError(
                f"export_meshes: {out} already holds an export ({existing[0].name}, ...); pass overwrite=True "
                "(--overwrite) to replace it or choose an empty directory."
            )
        out.mkdir(parents=True, exist_ok=True)
        for path in existing:
            path.unlink()
        self.out_dir, self.fmt, self.fps = out, fmt, fps
        self.frames = 0
        self.num_vertices: int | None = None
        self.written: list[Path] = []
        self._raw = (
            tempfile.TemporaryFile(dir=out, prefix=".meshes.", suffix=".tmp") if fmt == "npz" else None
        )

    def write(self, vertices: Tensor | np.ndarray) -> None:
        """Append frames ``[m, V, 3]`` (or one frame ``[V, 3]``)."""
        verts = _check_vertices(vertices)
        if self.num_vertices is None:
            _check_face_range(self.faces, verts.shape[1])
            self.num_vertices = verts.shape[1]
        elif verts.shape[1] != self.num_vertices:
            raise MeshExportError(
                f"export_meshes: frames of {verts.shape[1]} vertices follow frames of {self.num_vertices}."
            )
        if self._raw is not None:
            self._raw.write(np.ascontiguousarray(verts).tobytes())
        else:
            for frame in verts:
                path = self.out_dir / f"frame_{self.frames:05d}.{self.fmt}"
                write_bytes_atomic(path, _mesh_bytes(frame, self.faces, self.fmt))
                self.written.append(path)
                self.frames += 1
            return
        self.frames += verts.shape[0]

    def close(self) -> list[Path]:
        """Finish the export (the npz is written now); returns the written paths, in frame order."""
        if self._raw is None:
            return self.written
        raw, self._raw = self._raw, None
        with raw:
            if not self.frames:
                raise MeshExportError("export_meshes: no frames were written.")
            path = self.out_dir / NPZ_NAME
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                      "shape": (self.frames, self.num_vertices, 3)}  # fmt: skip
            with atomic_write(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, True) as archive:
                with archive.open("vertices.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array_header_1_0(member, header)
                    raw.seek(0)
                    shutil.copyfileobj(raw, member, 1 << 22)
                arrays = {"faces": self.faces.astype(np.int32)}
                if self.fps is not None:
                    arrays["fps"] = np.asarray(np.float64(self.fps))
                for name, array in arrays.items():
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, array, allow_pickle=False)
        self.written = [path]
        return self.written

    def __enter__(self) -> MeshSequenceWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        elif self._raw is not None:
            self._raw.close()
            self._raw = None


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
    verts = _check_vertices(vertices)  # every input is checked before anything is written
    _check_face_range(_check_faces(faces), verts.shape[1])
    with MeshSequenceWriter(faces, out_dir, fmt, fps, overwrite) as writer:
        writer.write(verts)
    return writer.written
