"""Readers for the FLAME model files, without chumpy.

The official FLAME 2020 ``generic_model.pkl`` and FLAME 2023 ``flame2023.pkl`` are Python-2 era latin1 pickles whose
arrays are wrapped in chumpy ``Ch`` objects and whose ``J_regressor`` is a scipy sparse matrix pickled by an old
scipy. chumpy is unmaintained and does not install on modern Python, and a pickle can name code to run, so every
file here is read by :mod:`motion.face.pickles`: its restricted unpickler admits numpy, scipy-sparse and
chumpy-shaped data only, maps every ``chumpy.*`` class to a stand-in that keeps the wrapped array (``"x"``), and
rebuilds old scipy sparse matrices from their ``data``/``indices``/``indptr`` state so that they load whatever
scipy version wrote them. A file that names any other global is refused with a :class:`FlameModelFormatError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from motion.face.pickles import UnsafePickleError, load_npy, load_pickle, refusal_message, to_plain
from talk.errors import UserError

__all__ = [
    "FLAME_REQUIRED_KEYS",
    "FlameModelNotFoundError",
    "FlameModelFormatError",
    "load_flame_model",
    "load_flame_masks",
    "load_landmark_embedding",
    "load_mediapipe_embedding",
]

FLAME_REQUIRED_KEYS: tuple[str, ...] = (
    "v_template",
    "f",
    "shapedirs",
    "posedirs",
    "J_regressor",
    "weights",
    "kintree_table",
)

_DOWNLOAD_HINT = (
    "FLAME is licensed and cannot be shipped with talk: register and download it yourself from "
    "https://flame.is.tue.mpg.de, then pass the path of generic_model.pkl / flame2023.pkl "
    "(e.g. FLAME(model_path=...) or --model.face_model.model_path), or use motion.face.procedural.face."
    "write_procedural_face() for a licence-free stand-in"
)


class FlameModelNotFoundError(UserError, FileNotFoundError):
    """Raised when a FLAME model / masks / landmark file does not exist."""


class FlameModelFormatError(UserError, ValueError):
    """Raised when a file exists but is not a FLAME model of the expected structure."""


def _unpickle(p: Path, kind: str) -> Any:
    """The file through the restricted unpickler, stand-ins replaced by arrays; a refused global is a one-liner."""
    try:
        return to_plain(load_npy(p) if p.suffix == ".npy" else load_pickle(p))
    except UnsafePickleError as exc:
        raise FlameModelFormatError(refusal_message(p, kind, exc)) from None


def _check_exists(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FlameModelNotFoundError(f"{what} file not found: '{p}'. {_DOWNLOAD_HINT}.")
    return p


def load_flame_model(path: str | Path) -> dict[str, Any]:
    """Load a FLAME model pickle into plain numpy arrays (no chumpy needed).

    Args:
        path: ``generic_model.pkl`` (FLAME 2020), ``flame2023.pkl`` (FLAME 2023) or a file of the same structure
            (e.g. written by ``motion.face.procedural.face.write_procedural_face``).

    Returns:
        Dict with at least ``v_template [V,3]``, ``f [F,3]``, ``shapedirs [V,3,S]``, ``posedirs [V,3,36]``,
        ``J_regressor`` (scipy.sparse csc ``[J,V]``), ``weights [V,J]``, ``kintree_table [2,J]`` as numpy arrays,
        plus any other keys of the file (``bs_style``, ``bs_type``, ...).

    Raises:
        FlameModelNotFoundError: the file does not exist (the message explains where to get FLAME).
        FlameModelFormatError: the file is not a pickle of the expected structure.
    """
    p = _check_exists(path, "FLAME model")
    try:
        model = _unpickle(p, "FLAME model")
    except FlameModelFormatError:
        raise
    except Exception as exc:  # any unpickling failure is a format problem for the user
        raise FlameModelFormatError(
            f"Could not read FLAME model '{p}' as a FLAME pickle ({type(exc).__name__}: {exc}); pass the official "
            "generic_model.pkl / flame2023.pkl."
        ) from exc
    if not isinstance(model, dict):
        raise FlameModelFormatError(
            f"FLAME model '{p}' holds a {type(model).__name__}, expected a dict of arrays."
        )
    missing = [k for k in FLAME_REQUIRED_KEYS if k not in model]
    if missing:
        raise FlameModelFormatError(
            f"FLAME model '{p}' lacks keys {missing}; expected a FLAME 2020/2023 model pickle with keys "
            f"{list(FLAME_REQUIRED_KEYS)}."
        )
    out: dict[str, Any] = {}
    for key, val in model.items():
        if key == "J_regressor":
            import scipy.sparse as sp

            out[key] = sp.csc_matrix(val) if sp.issparse(val) else sp.csc_matrix(np.asarray(val, np.float64))
        elif isinstance(val, np.ndarray) or key in FLAME_REQUIRED_KEYS:
            out[key] = np.asarray(val)
        else:
            out[key] = val
    _validate_shapes(out, p)
    return out


def _validate_shapes(m: dict[str, Any], p: Path) -> None:
    v = m["v_template"]
    if v.ndim != 2 or v.shape[1] != 3:
        raise FlameModelFormatError(f"FLAME model '{p}': v_template has shape {v.shape}, expected [V,3].")
    n_v = v.shape[0]
    n_j = m["kintree_table"].shape[-1]
    checks = {
        "f": (m["f"].ndim == 2 and m["f"].shape[1] == 3, "[F,3]"),
        "shapedirs": (m["shapedirs"].ndim == 3 and m["shapedirs"].shape[:2] == (n_v, 3), f"[{n_v},3,S]"),
        "posedirs": (m["posedirs"].shape == (n_v, 3, 9 * (n_j - 1)), f"[{n_v},3,{9 * (n_j - 1)}]"),
        "J_regressor": (m["J_regressor"].shape == (n_j, n_v), f"[{n_j},{n_v}]"),
        "weights": (m["weights"].shape == (n_v, n_j), f"[{n_v},{n_j}]"),
        "kintree_table": (m["kintree_table"].shape == (2, n_j), f"[2,{n_j}]"),
    }
    for key, (ok, expected) in checks.items():
        if not ok:
            raise FlameModelFormatError(
                f"FLAME model '{p}': '{key}' has shape {tuple(np.shape(m[key]))}, expected {expected}."
            )


def load_flame_masks(path: str | Path) -> dict[str, np.ndarray]:
    """Load ``FLAME_masks.pkl`` (region name -> vertex ids).

    Args:
        path: the masks pickle (latin1; values may be numpy arrays, lists or chumpy objects).

    Returns:
        Dict region name -> int64 ``[N]`` vertex ids.
    """
    p = _check_exists(path, "FLAME masks")
    try:
        raw = _unpickle(p, "FLAME masks")
    except FlameModelFormatError:
        raise
    except Exception as exc:
        raise FlameModelFormatError(
            f"Could not read FLAME masks '{p}' ({type(exc).__name__}: {exc}); pass FLAME_masks.pkl."
        ) from exc
    if not isinstance(raw, dict):
        raise FlameModelFormatError(f"FLAME masks '{p}' holds a {type(raw).__name__}, expected a dict.")
    out = {}
    for k, v in raw.items():
        key = k.decode("latin1") if isinstance(k, bytes) else str(k)
        out[key] = np.asarray(v).astype(np.int64).reshape(-1)
    return out


def load_landmark_embedding(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Load a static landmark embedding (triangle ids + barycentric coordinates).

    Accepts FLAME's ``flame_static_embedding.pkl`` (keys ``lmk_face_idx``, ``lmk_b_coords``), the ``.npy``
    dict of DECA / FLAME_PyTorch (``static_lmk_faces_idx``, ``static_lmk_bary_coords``; full-face ``full_lmk_*``
    keys are preferred when present) and the procedural face's ``landmark_embedding.pkl``.

    Args:
        path: embedding file.

    Returns:
        ``(face_idx [L] int64, bary [L,3] float)``.
    """
    p = _check_exists(path, "Landmark embedding")
    if p.suffix == ".npz":
        return load_mediapipe_embedding(p)[:2]
    try:
        raw = _unpickle(p, "landmark embedding")
        if isinstance(raw, np.ndarray) and raw.dtype == object:
            raw = to_plain(raw.item())  # DECA / FLAME_PyTorch: a 0-d object array holding the dict
    except FlameModelFormatError:
        raise
    except Exception as exc:
        raise FlameModelFormatError(f"Could not read landmark embedding '{p}' ({exc}).") from exc
    for fk, bk in (
        ("full_lmk_faces_idx", "full_lmk_bary_coords"),
        ("lmk_face_idx", "lmk_b_coords"),
        ("static_lmk_faces_idx", "static_lmk_bary_coords"),
    ):
        if isinstance(raw, dict) and fk in raw and bk in raw:
            fi = np.asarray(raw[fk]).astype(np.int64).reshape(-1)
            bc = np.asarray(raw[bk], dtype=np.float64).reshape(-1, 3)
            return fi, bc
    raise FlameModelFormatError(
        f"Landmark embedding '{p}' has none of the key pairs lmk_face_idx/lmk_b_coords or "
        "static_lmk_faces_idx/static_lmk_bary_coords."
    )


def load_mediapipe_embedding(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load a MediaPipe FaceMesh landmark embedding in FLAME's ``mediapipe_landmark_embedding.npz`` format.

    FLAME's file covers 105 of FaceMesh's 468 points; the procedural head's
    (``motion.face.procedural.face.mediapipe_embedding_path()``) covers all 468. Read without pickle.

    Args:
        path: ``.npz`` with ``lmk_face_idx [L]``, ``lmk_b_coords [L,3]`` and ``landmark_indices [L]`` (FaceMesh
            index of each row, 0-467).

    Returns:
        ``(face_idx [L] int64, bary [L,3] float64, landmark_indices [L] int64)``.
    """
    p = _check_exists(path, "MediaPipe landmark embedding")
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in ("lmk_face_idx", "lmk_b_coords", "landmark_indices")}
    except KeyError as exc:
        raise FlameModelFormatError(
            f"MediaPipe landmark embedding '{p}' lacks {exc}; expected lmk_face_idx, lmk_b_coords and "
            "landmark_indices as in FLAME's mediapipe_landmark_embedding.npz."
        ) from None
    except Exception as exc:
        raise FlameModelFormatError(
            f"Could not read MediaPipe landmark embedding '{p}' as an .npz file ({type(exc).__name__}: {exc})."
        ) from None
    fi = arrays["lmk_face_idx"].astype(np.int64).reshape(-1)
    bc = arrays["lmk_b_coords"].astype(np.float64).reshape(-1, 3)
    li = arrays["landmark_indices"].astype(np.int64).reshape(-1)
    if not len(fi) == len(bc) == len(li) or (li.size and (li.min() < 0 or li.max() >= 468)):
        raise FlameModelFormatError(
            f"MediaPipe landmark embedding '{p}' has {len(fi)} triangles, {len(bc)} barycentrics and {len(li)} "
            "landmark indices (expected equal counts and indices in 0-467)."
        )
    return fi, bc, li
