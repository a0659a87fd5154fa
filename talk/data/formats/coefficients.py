"""Motion files of face-model coefficients other than FLAME: ARKit-52 blendshape weights and BFM 3DMM coefficients.

ARKit weights ``[T, 52]`` (Apple's order, read back from any spelling of the names):

- ``.npz`` with ``weights [T, K]`` and optionally ``names [K]`` (strings; without them the columns are the 52
  ARKit names in Apple's order), as ``talk data synth`` writes ``arkit/<name>.npz``;
- ``.csv`` as the Live Link Face app records a take (Timecode, BlendShapeCount, 52 named columns, head and eye
  rotations, which are ignored); the manifest line's ``fps`` is the rate the take is read at;
- ``.json`` as Audio2Face exports blendshape weights (``exportFps``, ``facsNames``, ``weightMat``).

BFM coefficients ``[T, 257]`` (Deep3DFaceRecon's split: identity 80, expression 64, texture 80, angles 3, SH
lighting 27, translation 3), one row per frame:

- ``.npz`` with ``coeff [T, 257]``, as ``talk data synth`` writes ``bfm/<name>.npz``;
- ``.mat`` with ``coeff`` or ``full_3dmm`` ``[T, 257]`` (the per-frame coefficient files of video pipelines built on
  Deep3DFaceRecon, e.g. SadTalker's ``full_3dmm``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from talk.data.formats.manifest_file import ManifestError

__all__ = ["ARKIT_SUFFIXES", "BFM_COEFFS", "BFM_SUFFIXES", "coefficient_kind", "read_arkit", "read_bfm"]

BFM_COEFFS = 257
ARKIT_SUFFIXES = (".npz", ".csv", ".json")
BFM_SUFFIXES = (".npz", ".mat")
_BFM_MAT_KEYS = ("coeff", "full_3dmm")


def coefficient_kind(path: Path) -> str | None:
    """``"arkit"`` or ``"bfm"`` when ``path`` is a coefficient file of this module, else None (an ``.npz`` is
    looked into: ``weights`` -> arkit, ``coeff`` -> bfm)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".json"):
        return "arkit"
    if suffix == ".mat":
        return "bfm"
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                keys = set(npz.files)
        except Exception:  # noqa: BLE001 - the FLAME reader reports unreadable files
            return None
        if "weights" in keys:
            return "arkit"
        if "coeff" in keys:
            return "bfm"
    return None


def _finite(a: np.ndarray, path: Path, what: str, where: str) -> np.ndarray:
    if a.ndim != 2 or a.shape[0] < 1 or not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
        raise ManifestError(
            f"{where}: {path} {what} must be a finite numeric [T, D] array with T >= 1, got {a.shape} {a.dtype}."
        )
    return a.astype(np.float32)


def read_arkit(path: Path, fps: float, where: str = "") -> np.ndarray:
    """ARKit weights ``[T, 52]`` float32 in Apple's order from an ``.npz``, Live Link Face ``.csv`` or ``.json``.

    Raises:
        ManifestError: one sentence naming ``where`` and the file.
    """
    from motion.face.blendshapes.arkit import ARKIT_NAMES, arkit_name
    from motion.face.blendshapes.errors import RigFormatError, RigNotFoundError
    from motion.face.blendshapes.weights_io import read_live_link_csv, read_weights_json

    where = where or str(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".json"):
        try:
            track = read_live_link_csv(path, fps) if suffix == ".csv" else read_weights_json(path)
        except (RigFormatError, RigNotFoundError) as exc:
            raise ManifestError(f"{where}: {exc}") from None
        return _finite(np.asarray(track.weights), path, "weights", where)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
    except Exception as exc:  # noqa: BLE001
        raise ManifestError(f"{where}: {path} is not a readable .npz file ({exc}).") from None
    weights = _finite(arrays["weights"], path, "key 'weights'", where)
    names = arrays.get("names")
    if names is None:
        if weights.shape[1] != len(ARKIT_NAMES):
            raise ManifestError(
                f"{where}: {path} has {weights.shape[1]} weight columns and no 'names'; store the 52 ARKit "
                "weights in Apple's order, or add names [K]."
            )
        return weights
    names = [str(n) for n in names.reshape(-1)]
    if len(names) != weights.shape[1]:
        raise ManifestError(f"{where}: {path} has {len(names)} names for {weights.shape[1]} weight columns.")
    out = np.zeros((weights.shape[0], len(ARKIT_NAMES)), np.float32)
    unknown = []
    for j, name in enumerate(names):
        canonical = arkit_name(name)
        if canonical is None:
            unknown.append(name)
        else:
            out[:, ARKIT_NAMES.index(canonical)] = weights[:, j]
    if unknown:
        raise ManifestError(
            f"{where}: {path} names columns that are not ARKit blendshapes: {', '.join(unknown)}."
        )
    return out


def read_bfm(path: Path, where: str = "") -> np.ndarray:
    """BFM coefficients ``[T, 257]`` float32 from an ``.npz`` (``coeff``) or ``.mat`` (``coeff`` / ``full_3dmm``).

    Raises:
        ManifestError: one sentence naming ``where`` and the file.
    """
    where = where or str(path)
    if path.suffix.lower() == ".mat":
        from scipy.io import loadmat

        try:
            mat = loadmat(str(path))
        except Exception as exc:  # noqa: BLE001
            raise ManifestError(f"{where}: {path} is not a readable .mat file ({exc}).") from None
        key = next((k for k in _BFM_MAT_KEYS if k in mat), None)
        if key is None:
            found = ", ".join(k for k in mat if not k.startswith("__"))
            raise ManifestError(
                f"{where}: {path} has no per-frame coefficients ({' or '.join(_BFM_MAT_KEYS)} [T, 257]); it "
                f"holds {found or 'nothing'}."
            )
        coeff = np.asarray(mat[key])
    else:
        try:
            with np.load(path, allow_pickle=False) as npz:
                coeff = np.asarray(npz["coeff"])
        except Exception as exc:  # noqa: BLE001
            raise ManifestError(
                f"{where}: {path} is not a readable .npz file with 'coeff' ({exc})."
            ) from None
    coeff = _finite(coeff, path, "coefficients", where)
    if coeff.shape[1] != BFM_COEFFS:
        raise ManifestError(
            f"{where}: {path} has {coeff.shape[1]} coefficients per frame; BFM motion needs Deep3DFaceRecon's "
            f"{BFM_COEFFS} (identity 80, expression 64, texture 80, angles 3, lighting 27, translation 3)."
        )
    return coeff
