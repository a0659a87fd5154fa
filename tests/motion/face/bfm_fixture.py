"""A miniature, faithful ``BFM_model_front.mat`` for tests (the real one is licensed and ~200 MB).

The surface is a half ellipsoid facing +z (about 1.6 dm wide, like a face in the file's decimetres) with a nose
bump, off-centre as the real mean shape is (so re-centring matters); bases are smooth random fields with the real
column counts (80 / 64 / 80). It is written with ``scipy.io.savemat`` here, not through
:func:`motion.face.bfm_io.save_bfm_mat`, so that the loader is tested against an independent writer: 1-based
float64 ``tri`` / ``point_buf``, a ``(1, 68)`` ``keypoints`` row, mixed float dtypes, and extra keys
(``frontmask2_idx``, ``skinmask``, ``tri_mask2``) that the loader must ignore.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import savemat

from motion.face.bfm_io import BFMArrays

__all__ = ["NOSE_KEYPOINT", "write_mini_bfm", "grid_faces"]

NOSE_KEYPOINT = 30  # 0-based index of the nose tip among the 68 landmarks (iBUG 68-point scheme)
_OFFSET = np.array([0.05, 0.25, 0.3])  # decimetres: the real mean shape is not centred either


def grid_faces(rows: int, cols: int) -> np.ndarray:
    """Two counter-clockwise (seen from +z) triangles per grid quad, 0-based ``[2 (rows-1) (cols-1), 3]``."""
    tri = []
    for r in range(rows - 1):
        for c in range(cols - 1):
            i00, i01, i10, i11 = r * cols + c, r * cols + c + 1, (r + 1) * cols + c, (r + 1) * cols + c + 1
            tri += [(i00, i01, i11), (i00, i11, i10)]
    return np.array(tri, dtype=np.int64)


def _point_buf(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """The faces around each vertex (first 8, increasing), padded with F: a plain loop, independent of talk."""
    lists: list[list[int]] = [[] for _ in range(n_vertices)]
    for f, tri in enumerate(faces):
        for v in tri:
            if len(lists[v]) < 8:
                lists[v].append(f)
    out = np.full((n_vertices, 8), len(faces), dtype=np.int64)
    for v, faces_of_v in enumerate(lists):
        out[v, : len(faces_of_v)] = faces_of_v
    return out


def _smooth_basis(points: np.ndarray, n_cols: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """``[3V, n_cols]`` random low-order polynomial displacement fields, rows x, y, z interleaved per vertex."""
    x, y, z = (points / np.abs(points).max(axis=0)).T
    features = np.stack([np.ones_like(x), x, y, z, x * x, y * y, x * y, y * z, x * z], axis=1)  # [V, 9]
    weights = rng.normal(size=(features.shape[1], 3, n_cols)) * scale / 3.0
    return np.einsum("vp,pcn->vcn", features, weights).reshape(-1, n_cols)


def write_mini_bfm(path: str | Path, n_vertices: int = 300, seed: int = 0) -> BFMArrays:
    """Write a miniature ``BFM_model_front.mat`` to ``path``.

    Args:
        path: destination ``.mat`` file.
        n_vertices: approximate vertex count (the grid is square-ish; at least 100).
        seed: random seed of the bases, texture and landmark choice.

    Returns:
        What :func:`motion.face.bfm_io.load_bfm_mat` must read back (0-based, float32, not re-centred).
    """
    rng = np.random.default_rng(seed)
    rows = max(10, round(float(np.sqrt(n_vertices))))
    cols = max(10, round(n_vertices / rows)) | 1  # odd: a column at x = 0 holds the nose tip
    lon = np.linspace(-0.5 * np.pi, 0.5 * np.pi, cols)  # left to right
    lat = np.linspace(-0.42 * np.pi, 0.42 * np.pi, rows)  # chin to forehead
    lat_g, lon_g = np.meshgrid(lat, lon, indexing="ij")
    x = 0.8 * np.cos(lat_g) * np.sin(lon_g)
    y = 1.0 * np.sin(lat_g)
    z = 0.6 * np.cos(lat_g) * np.cos(lon_g)
    z = z + 0.25 * np.exp(-((x / 0.18) ** 2 + ((y + 0.05) / 0.25) ** 2))  # the nose
    points = np.stack([x, y, z], axis=-1).reshape(-1, 3) + _OFFSET
    n_v = points.shape[0]
    faces = grid_faces(rows, cols)

    front = np.flatnonzero(np.abs(points[:, 0] - _OFFSET[0]) < 0.55)
    nose = int(np.argmax(points[:, 2]))
    others = rng.choice(front[front != nose], size=67, replace=False)
    keypoints = np.insert(others, NOSE_KEYPOINT, nose)

    mean_tex = np.array([205.0, 150.0, 125.0]) + rng.normal(scale=8.0, size=(n_v, 3))
    arrays = BFMArrays(
        meanshape=points.astype(np.float32),
        id_base=_smooth_basis(points, 80, 0.05, rng).astype(np.float32),
        exp_base=_smooth_basis(points, 64, 0.02, rng).astype(np.float32),
        mean_tex=mean_tex.astype(np.float32),
        tex_base=_smooth_basis(points, 80, 6.0, rng).astype(np.float32),
        faces=faces,
        point_buf=_point_buf(faces, n_v),
        keypoints=keypoints.astype(np.int64),
    )
    frontmask = front[::2]
    tri_mask2 = faces[np.isin(faces, frontmask).all(axis=1)]
    savemat(
        str(path),
        {
            "meanshape": arrays.meanshape.astype(np.float64).reshape(1, -1),
            "meantex": arrays.mean_tex.astype(np.float64).reshape(1, -1),
            "idBase": arrays.id_base.astype(np.float64),
            "exBase": arrays.exp_base,  # float32, as the real expression basis comes from a float32 .bin
            "texBase": arrays.tex_base.astype(np.float64),
            "tri": (faces + 1).astype(np.float64),
            "point_buf": (arrays.point_buf + 1).astype(np.float64),
            "keypoints": (keypoints + 1).astype(np.float64).reshape(1, -1),
            "frontmask2_idx": (frontmask + 1).astype(np.float64).reshape(-1, 1),
            "skinmask": (rng.random((1, n_v)) > 0.5).astype(np.float64),
            "tri_mask2": (tri_mask2 + 1).astype(np.float64),
        },
    )
    return arrays
