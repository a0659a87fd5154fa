"""Reading and writing the Basel Face Model as Deep3DFaceRecon ships it (``BFM_model_front.mat``).

Deep3DFaceRecon's ``util/load_mats.py`` turns the licensed ``01_MorphableModel.mat`` (BFM 2009) and Guo et al.'s
expression basis into ``BFM_model_front.mat``, the file that Deep3DFaceRecon, SadTalker and PIRenderer read. Its
layout, exactly as ``scipy.io.loadmat`` returns it:

* ``meanshape`` ``(1, 3V)`` mean shape in decimetres (BFM millimetres / 100); ``meantex`` ``(1, 3V)`` mean albedo,
  0-255;
* ``idBase`` ``(3V, 80)``, ``exBase`` ``(3V, 64)`` (decimetres per unit coefficient, eigenvalues folded in),
  ``texBase`` ``(3V, 80)``; rows are x, y, z interleaved per vertex (row ``3i + c`` = vertex i, coordinate c);
* ``tri`` ``(F, 3)``, ``point_buf`` ``(V, 8)`` (the faces around each vertex, padded with ``F + 1``) and
  ``keypoints`` ``(1, 68)`` (the 68 landmark vertices), all 1-based (MATLAB);
* extra keys (``frontmask2_idx``, ``skinmask``, ``tri_mask2``) for Deep3DFaceRecon's losses, ignored here.

:class:`BFMArrays` holds the same arrays 0-based; :func:`save_bfm_mat` writes them back in the file's layout.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talk.errors import UserError

__all__ = [
    "BFM_REQUIRED_KEYS",
    "BFMArrays",
    "BFMFormatError",
    "BFMNotFoundError",
    "load_bfm_mat",
    "point_buf_from_faces",
    "save_bfm_mat",
]

BFM_REQUIRED_KEYS: tuple[str, ...] = (
    "meanshape",
    "idBase",
    "exBase",
    "meantex",
    "texBase",
    "tri",
    "point_buf",
    "keypoints",
)
POINT_BUF_WIDTH = 8  # faces listed per vertex in point_buf (Deep3DFaceRecon's facemodel_info.mat)

_HINT = (
    "pass Deep3DFaceRecon's BFM_model_front.mat (made by its util/load_mats.py from 01_MorphableModel.mat, which "
    "you download yourself from faces.dmi.unibas.ch under the BFM licence)"
)


class BFMNotFoundError(UserError, FileNotFoundError):
    """Raised when the BFM model file does not exist."""


class BFMFormatError(UserError, ValueError):
    """Raised when a file exists but is not a ``BFM_model_front.mat`` of the expected layout."""


@dataclass(frozen=True)
class BFMArrays:
    """The arrays of ``BFM_model_front.mat``, 0-based, in the file's units.

    Attributes:
        meanshape: ``[V,3]`` float32 mean shape, decimetres (not re-centred).
        id_base: ``[3V, Ni]`` float32 identity basis, rows x, y, z interleaved per vertex.
        exp_base: ``[3V, Ne]`` float32 expression basis, same row order.
        mean_tex: ``[V,3]`` float32 mean albedo, 0-255 RGB.
        tex_base: ``[3V, Nt]`` float32 albedo basis, same row order.
        faces: ``[F,3]`` int64 vertex indices.
        point_buf: ``[V,8]`` int64 faces around each vertex; ``F`` means "no face" (padding).
        keypoints: ``[L]`` int64 landmark vertices (L = 68 in the real file).
    """

    meanshape: np.ndarray
    id_base: np.ndarray
    exp_base: np.ndarray
    mean_tex: np.ndarray
    tex_base: np.ndarray
    faces: np.ndarray
    point_buf: np.ndarray
    keypoints: np.ndarray

    @property
    def num_vertices(self) -> int:
        """Number of vertices V."""
        return int(self.meanshape.shape[0])

    @classmethod
    def zeros(cls, n_v: int, n_f: int, n_id: int, n_exp: int, n_tex: int, n_landmarks: int) -> BFMArrays:
        """All-zero arrays of the given sizes (V, F, Ni, Ne, Nt, L), e.g. to be overwritten by a state dict."""
        f32, i64 = np.float32, np.int64
        return cls(
            meanshape=np.zeros((n_v, 3), f32),
            id_base=np.zeros((3 * n_v, n_id), f32),
            exp_base=np.zeros((3 * n_v, n_exp), f32),
            mean_tex=np.zeros((n_v, 3), f32),
            tex_base=np.zeros((3 * n_v, n_tex), f32),
            faces=np.zeros((n_f, 3), i64),
            point_buf=np.zeros((n_v, POINT_BUF_WIDTH), i64),
            keypoints=np.zeros(n_landmarks, i64),
        )


def _fail(p: Path, problem: str) -> BFMFormatError:
    return BFMFormatError(f"BFM model '{p}' {problem}; {_HINT}.")


def _numeric(raw: object, key: str, p: Path) -> np.ndarray:
    a = np.asarray(raw)
    if a.dtype.kind not in "biuf" or a.size == 0:
        raise _fail(p, f"has a '{key}' entry of dtype {a.dtype} and shape {a.shape}, not a numeric array")
    return a


def _vector(a: np.ndarray, key: str, p: Path) -> np.ndarray:
    """A MATLAB row or column vector (``(1, N)`` / ``(N, 1)``) as ``[N]``."""
    if a.ndim > 2 or (a.ndim == 2 and min(a.shape) != 1):
        raise _fail(p, f"has '{key}' of shape {a.shape}, expected a (1, N) row vector")
    return a.reshape(-1)


def _indices(a: np.ndarray, key: str, lo: int, hi: int, p: Path) -> np.ndarray:
    """1-based MATLAB indices in ``[lo, hi]`` -> 0-based int64, refusing fractions and out-of-range values."""
    if a.dtype.kind == "f" and not np.array_equal(a, np.round(a)):
        raise _fail(p, f"has non-integer values in '{key}', which holds 1-based indices")
    if a.min() < lo or a.max() > hi:
        raise _fail(
            p,
            f"has '{key}' values in [{a.min():g}, {a.max():g}], outside the valid 1-based range [{lo}, {hi}]",
        )
    return np.ascontiguousarray(a, dtype=np.int64) - 1


def _basis(a: np.ndarray, key: str, n_rows: int, p: Path) -> np.ndarray:
    if a.ndim != 2 or a.shape[0] != n_rows:
        raise _fail(
            p, f"has '{key}' of shape {a.shape}, expected ({n_rows}, N) = 3 rows per vertex of meanshape"
        )
    if not np.isfinite(a).all():
        raise _fail(p, f"has NaN or infinite values in '{key}'")
    return np.ascontiguousarray(a, dtype=np.float32)  # loadmat gives Fortran order; keep C order for matmuls


def load_bfm_mat(path: str | Path) -> BFMArrays:
    """Read Deep3DFaceRecon's ``BFM_model_front.mat`` (layout in the module docstring).

    Args:
        path: the ``.mat`` file; any numeric dtype per array is accepted, extra keys are ignored.

    Returns:
        :class:`BFMArrays`, 0-based, float32 in decimetres (shape) and 0-255 (albedo).

    Raises:
        BFMNotFoundError: the file does not exist.
        BFMFormatError: the file is not a readable ``.mat`` or its arrays do not have the layout above.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise BFMNotFoundError(f"BFM model file not found: '{p}'; {_HINT}.")
    from scipy.io import loadmat

    try:
        mat = loadmat(p)
    # scipy raises ValueError, MatReadError, NotImplementedError (v7.3 HDF5), struct errors, ... on bad files
    except Exception as exc:
        reason = " ".join(str(exc).split())  # one line, whatever scipy's message holds
        raise _fail(p, f"is not a readable MATLAB .mat file ({type(exc).__name__}: {reason})") from None
    for key in BFM_REQUIRED_KEYS:
        if key not in mat:
            raise _fail(p, f"has no '{key}' array, so it is not a BFM_model_front.mat")
    raw = {key: _numeric(mat[key], key, p) for key in BFM_REQUIRED_KEYS}

    mean = _vector(raw["meanshape"], "meanshape", p)
    if mean.size % 3:
        raise _fail(p, f"has a meanshape of {mean.size} values, not 3 per vertex")
    if not np.isfinite(mean).all():
        raise _fail(p, "has NaN or infinite values in 'meanshape'")
    n_v = mean.size // 3
    tex = _vector(raw["meantex"], "meantex", p)
    if tex.size != 3 * n_v:
        raise _fail(p, f"has a meantex of {tex.size} values but meanshape has {3 * n_v} (3 per vertex)")
    tri = raw["tri"]
    if tri.ndim != 2 or tri.shape[1] != 3:
        raise _fail(p, f"has 'tri' of shape {tri.shape}, expected (F, 3)")
    n_f = tri.shape[0]
    buf = raw["point_buf"]
    if buf.ndim != 2 or buf.shape[0] != n_v:
        raise _fail(
            p, f"has 'point_buf' of shape {buf.shape}, expected ({n_v}, {POINT_BUF_WIDTH}), a row per vertex"
        )
    return BFMArrays(
        meanshape=mean.reshape(n_v, 3).astype(np.float32),
        id_base=_basis(raw["idBase"], "idBase", 3 * n_v, p),
        exp_base=_basis(raw["exBase"], "exBase", 3 * n_v, p),
        mean_tex=tex.reshape(n_v, 3).astype(np.float32),
        tex_base=_basis(raw["texBase"], "texBase", 3 * n_v, p),
        faces=_indices(tri, "tri", 1, n_v, p),
        point_buf=_indices(buf, "point_buf", 1, n_f + 1, p),  # F + 1 pads (a zero normal after the -1)
        keypoints=_indices(_vector(raw["keypoints"], "keypoints", p), "keypoints", 1, n_v, p),
    )


def _check_arrays(arrays: BFMArrays) -> None:
    """Shape agreement of in-memory arrays (what :func:`load_bfm_mat` guarantees for a file)."""
    n_v = arrays.num_vertices
    n_f = int(arrays.faces.shape[0])
    expected = {
        "meanshape": (arrays.meanshape.shape == (n_v, 3), "[V,3]"),
        "id_base": (arrays.id_base.ndim == 2 and arrays.id_base.shape[0] == 3 * n_v, "[3V,Ni]"),
        "exp_base": (arrays.exp_base.ndim == 2 and arrays.exp_base.shape[0] == 3 * n_v, "[3V,Ne]"),
        "mean_tex": (arrays.mean_tex.shape == (n_v, 3), "[V,3]"),
        "tex_base": (arrays.tex_base.ndim == 2 and arrays.tex_base.shape[0] == 3 * n_v, "[3V,Nt]"),
        "faces": (arrays.faces.ndim == 2 and arrays.faces.shape[1] == 3, "[F,3]"),
        "point_buf": (arrays.point_buf.ndim == 2 and arrays.point_buf.shape[0] == n_v, "[V,8]"),
        "keypoints": (arrays.keypoints.ndim == 1, "[L]"),
    }
    for name, (ok, shape) in expected.items():
        if not ok:
            raise ValueError(
                f"BFMArrays.{name} has shape {getattr(arrays, name).shape}, expected {shape} with V={n_v}."
            )
    ranges = {
        "faces": (arrays.faces, n_v - 1),
        "point_buf": (arrays.point_buf, n_f),
        "keypoints": (arrays.keypoints, n_v - 1),
    }
    for name, (idx, hi) in ranges.items():
        if idx.size and (idx.min() < 0 or idx.max() > hi):
            raise ValueError(f"BFMArrays.{name} holds indices outside [0, {hi}].")


def save_bfm_mat(path: str | Path, arrays: BFMArrays) -> Path:
    """Write ``arrays`` as a ``BFM_model_front.mat`` that :func:`load_bfm_mat` (and Deep3DFaceRecon) reads.

    Row vectors ``(1, N)`` for ``meanshape`` / ``meantex`` / ``keypoints``, 1-based float64 indices (as MATLAB
    stores them), float32 bases. The file is written to a temporary file in the same folder and then renamed, so
    an interrupted write never leaves a truncated model behind.

    Args:
        path: destination ``.mat`` file (its folder must exist).
        arrays: 0-based arrays, e.g. from :func:`load_bfm_mat`.

    Returns:
        The written path.
    """
    _check_arrays(arrays)
    from scipy.io import savemat

    p = Path(path).expanduser()
    content = {
        "meanshape": arrays.meanshape.astype(np.float32).reshape(1, -1),
        "idBase": arrays.id_base.astype(np.float32),
        "exBase": arrays.exp_base.astype(np.float32),
        "meantex": arrays.mean_tex.astype(np.float32).reshape(1, -1),
        "texBase": arrays.tex_base.astype(np.float32),
        "tri": arrays.faces.astype(np.float64) + 1.0,
        "point_buf": arrays.point_buf.astype(np.float64) + 1.0,
        "keypoints": arrays.keypoints.astype(np.float64).reshape(1, -1) + 1.0,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            savemat(fh, content)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def point_buf_from_faces(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """The faces around each vertex, as ``point_buf`` lists them (0-based).

    Args:
        faces: ``[F,3]`` 0-based vertex indices.
        n_vertices: V.

    Returns:
        ``[V,8]`` int64: each vertex's faces in increasing face order, padded with ``F`` (no face); a vertex in
        more than 8 faces keeps its first 8.
    """
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    n_f = faces.shape[0]
    corner_vertex = faces.reshape(-1)
    corner_face = np.repeat(np.arange(n_f, dtype=np.int64), 3)
    order = np.argsort(corner_vertex, kind="stable")  # stable: faces stay in increasing order per vertex
    vertex, face = corner_vertex[order], corner_face[order]
    counts = np.bincount(vertex, minlength=n_vertices)
    rank = np.arange(vertex.size) - (np.cumsum(counts) - counts)[vertex]  # position within the vertex's list
    keep = rank < POINT_BUF_WIDTH
    out = np.full((n_vertices, POINT_BUF_WIDTH), n_f, dtype=np.int64)
    out[vertex[keep], rank[keep]] = face[keep]
    return out
