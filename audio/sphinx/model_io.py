"""Readers for the files of a CMU Sphinx (PocketSphinx 5) acoustic model directory, in pure numpy.

Formats, as PocketSphinx 5.1 reads them (``bin_mdef.c``, ``ms_gauden.c``, ``ptm_mgau.c``, ``tmat.c``, ``bio.c``):

- ``feat.params``: one ``-name value`` pair per line, the front-end and feature settings the model was trained with.
- ``mdef`` (binary, "BMDF"): a byte-order word, a format version, a skipped text description, ten int32 counts,
  the NUL-terminated CI phone names padded to 4 bytes, the CD lookup tree (8 bytes a node), one 12-byte entry per
  phone (int32 senone-sequence id, int32 transition-matrix id, 4 bytes: CI ``filler`` flag or CD
  ``wpos, base, left, right``), then an int32 count and the senone sequences (uint16, ``n_emit_state`` a phone).
- ``means`` / ``variances`` (Sphinx-3 binary): a text header ``s3`` .. ``endhdr``, the byte-order magic
  0x11223344, int32 ``n_codebook, n_stream, n_density``, int32 stream lengths, int32 value count, float32
  values ``[codebook, stream, density, dim]``, and a trailing uint32 checksum when the header says ``chksum0``.
- ``transition_matrices``: the same header, int32 ``n_tmat, n_src, n_dst (= n_src + 1), count``, float32 rows.
- ``sendump``: int32-length-prefixed header strings up to a zero length (``feature_count``, ``cluster_count``...),
  with ``cluster_count 0``: int32 rows (densities) and columns (senones), then one uint8 per
  ``[stream, density, senone]``: the mixture weight's negated log in units of ``1.0001 ** 1024``.

Every reader raises :class:`SphinxModelError` (one sentence naming the file) on a missing or malformed file.
"""

from __future__ import annotations

import importlib.util
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talk.errors import UserError

__all__ = [
    "MIXW_LOG_UNIT",
    "ModelDefinition",
    "SphinxModelError",
    "default_model_dir",
    "read_feat_params",
    "read_gaussians",
    "read_mdef",
    "read_sendump",
    "read_transition_matrices",
]

# PocketSphinx keeps log-likelihoods in base 1.0001 and quantizes mixture weights after a further 10-bit shift,
# so one sendump unit is 1024 * ln(1.0001) nats (about 0.1024).
MIXW_LOG_UNIT = 1024 * math.log(1.0001)
_S3_MAGIC = 0x11223344
_BMDF = 0x46444D42  # "BMDF" read as a little-endian int32
_TMAT_FLOOR = 1e-4  # PocketSphinx's -tmatfloor default


class SphinxModelError(UserError, ValueError):
    """A Sphinx acoustic model file is missing or not in the format PocketSphinx writes; the message names it."""


def default_model_dir() -> Path:
    """The US English acoustic model inside the installed ``pocketsphinx`` wheel (found without importing it).

    Raises:
        ImportError: pocketsphinx is not installed (it provides the model files).
        SphinxModelError: pocketsphinx is installed but its model folder is missing.
    """
    spec = importlib.util.find_spec("pocketsphinx")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "audio.sphinx reads the acoustic model shipped in the pocketsphinx wheel: "
            "pip install 'talk[speech]' (or pip install pocketsphinx), or pass model_dir"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "en-us" / "en-us"
    if not (path / "mdef").is_file():
        raise SphinxModelError(
            f"{path}: no acoustic model in the installed pocketsphinx; reinstall pocketsphinx"
        )
    return path


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise SphinxModelError(
            f"{path}: model file not found; pass the folder holding the Sphinx model"
        ) from None
    except OSError as err:
        raise SphinxModelError(f"{path}: cannot read the model file ({err.strerror})") from None


def read_feat_params(path: str | Path) -> dict[str, str]:
    """``feat.params`` as ``{"lowerf": "130", ...}`` (leading dashes dropped, values as written)."""
    path = Path(path)
    try:
        text = _read_bytes(path).decode("ascii")
    except UnicodeDecodeError:
        raise SphinxModelError(f"{path}: feat.params is not a text file of '-name value' lines") from None
    params = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].startswith("-"):
            raise SphinxModelError(f"{path}: line {line!r} is not a '-name value' pair")
        params[parts[0][1:]] = parts[1]
    return params


def _s3_header(data: bytes, path: Path) -> tuple[dict[str, str], int, str]:
    """Parses a Sphinx-3 binary header: (arguments, offset of the first value, numpy byte-order prefix)."""
    if not data.startswith(b"s3\n"):
        raise SphinxModelError(f"{path}: not a Sphinx-3 binary file (no 's3' header)")
    end = data.find(b"endhdr\n")
    if end < 0:
        raise SphinxModelError(f"{path}: Sphinx-3 header has no 'endhdr' line")
    args = {}
    for line in data[3:end].decode("ascii", "replace").splitlines():
        words = line.split()
        if len(words) >= 2 and not words[0].startswith("#"):
            args[words[0]] = words[1]
    offset = end + len(b"endhdr\n")
    if len(data) < offset + 4:
        raise SphinxModelError(f"{path}: file ends inside its header")
    for order in ("<", ">"):
        if struct.unpack_from(order + "I", data, offset)[0] == _S3_MAGIC:
            return args, offset + 4, order
    raise SphinxModelError(f"{path}: bad byte-order magic after the header")


def _ints(data: bytes, offset: int, count: int, order: str, path: Path) -> tuple[list[int], int]:
    if len(data) < offset + 4 * count:
        raise SphinxModelError(f"{path}: file is truncated")
    return list(struct.unpack_from(f"{order}{count}i", data, offset)), offset + 4 * count


def _floats(data: bytes, offset: int, count: int, order: str, args: dict[str, str], path: Path) -> np.ndarray:
    trailer = 4 if "chksum0" in args else 0  # a uint32 checksum follows the values
    if len(data) != offset + 4 * count + trailer:
        raise SphinxModelError(
            f"{path}: file holds {len(data) - offset - trailer} bytes of values where its header declares {count} "
            "float32 values"
        )
    values = np.frombuffer(data, dtype=order + "f4", count=count, offset=offset).astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise SphinxModelError(f"{path}: contains NaN or infinite values")
    return values


def read_gaussians(path: str | Path) -> np.ndarray:
    """A Sphinx-3 gaussian parameter file (``means`` or ``variances``).

    Returns:
        float32 ``[n_codebook, n_stream, n_density, stream_len]`` (all streams must have one length, as in
        the 1s_c_d_dd model split 13/13/13 by its ``-svspec``).
    """
    path = Path(path)
    data = _read_bytes(path)
    args, offset, order = _s3_header(data, path)
    (n_cb, n_stream, n_density), offset = _ints(data, offset, 3, order, path)
    if min(n_cb, n_stream, n_density) <= 0:
        raise SphinxModelError(f"{path}: non-positive dimensions {n_cb} x {n_stream} x {n_density}")
    lens, offset = _ints(data, offset, n_stream, order, path)
    (count,), offset = _ints(data, offset, 1, order, path)
    if len(set(lens)) != 1 or lens[0] <= 0 or count != n_cb * n_density * sum(lens):
        raise SphinxModelError(f"{path}: stream lengths {lens} and value count {count} do not fit together")
    values = _floats(data, offset, count, order, args, path)
    return values.reshape(n_cb, n_stream, n_density, lens[0])


def read_transition_matrices(path: str | Path) -> np.ndarray:
    """HMM transition matrices as natural-log probabilities ``[n_tmat, n_state, n_state + 1]`` (-inf: none).

    Rows are normalized, their non-zero entries floored at 1e-4 and normalized again, as PocketSphinx does
    (``-tmatfloor``); the last column is the exit to the following phone.
    """
    path = Path(path)
    data = _read_bytes(path)
    args, offset, order = _s3_header(data, path)
    (n_tmat, n_src, n_dst, count), offset = _ints(data, offset, 4, order, path)
    if n_tmat <= 0 or n_src <= 0 or n_dst != n_src + 1 or count != n_tmat * n_src * n_dst:
        raise SphinxModelError(
            f"{path}: dimensions {n_tmat} x {n_src} x {n_dst} ({count} values) are not valid"
        )
    tp = _floats(data, offset, count, order, args, path).reshape(n_tmat, n_src, n_dst).astype(np.float64)
    if np.any(tp < 0) or np.any(tp.sum(-1) <= 0):
        raise SphinxModelError(f"{path}: a transition matrix row is negative or all zero")
    tp /= tp.sum(-1, keepdims=True)
    tp = np.where(tp > 0, np.maximum(tp, _TMAT_FLOOR), 0.0)
    tp /= tp.sum(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.log(tp)


def read_sendump(path: str | Path) -> np.ndarray:
    """PocketSphinx's quantized mixture weights (``sendump``).

    Returns:
        uint8 ``[n_stream, n_density, n_sen]``: ``-log(weight) / MIXW_LOG_UNIT`` rounded toward -inf, i.e. the
        weight of density k of senone s in stream f is ``exp(-q[f, k, s] * MIXW_LOG_UNIT)``.
    """
    path = Path(path)
    data = _read_bytes(path)
    offset, fields = 0, {}
    order = "<"
    while True:
        if len(data) < offset + 4:
            raise SphinxModelError(f"{path}: file ends inside its header")
        (n,) = struct.unpack_from(order + "i", data, offset)
        if offset == 0 and not 0 < n < 1000:
            order = ">"
            (n,) = struct.unpack_from(order + "i", data, offset)
            if not 0 < n < 1000:
                raise SphinxModelError(f"{path}: not a PocketSphinx sendump file (bad title length)")
        offset += 4
        if n == 0:
            break
        if n < 0 or len(data) < offset + n:
            raise SphinxModelError(f"{path}: malformed header string at byte {offset - 4}")
        words = data[offset : offset + n].rstrip(b"\0").decode("ascii", "replace").split()
        if len(words) == 2 and words[1].isdigit():
            fields[words[0]] = int(words[1])
        offset += n
    if fields.get("cluster_count", 0) != 0:
        raise SphinxModelError(f"{path}: clustered (4-bit) mixture weights are not supported")
    (n_density, n_sen), offset = _ints(data, offset, 2, order, path)
    n_stream = fields.get("feature_count", 1)
    if min(n_density, n_sen, n_stream) <= 0 or len(data) != offset + n_stream * n_density * n_sen:
        raise SphinxModelError(
            f"{path}: holds {len(data) - offset} bytes of weights where {n_stream} x {n_density} x {n_sen} are declared"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(n_stream, n_density, n_sen).copy()


@dataclass(frozen=True, eq=False)
class ModelDefinition:
    """The model definition (``mdef``): CI phones, every phone's HMM and which senones belong to which base phone.

    Attributes:
        ci_phones: The ``P`` context-independent phone names (``"AA"``, ..., ``"SIL"``, fillers like ``"+NSN+"``).
        filler: bool ``[P]``, whether each CI phone is a filler (silence and noises).
        n_emit_state: Emitting states per phone HMM (3 here).
        n_ci_sen: Number of CI senones; they come first (CI phone p owns ``p * n_emit_state + j``).
        n_sen: Number of senones, CI and context-dependent.
        n_tmat: Number of transition matrices.
        phone_base: int64 ``[n_phone]``, each phone's base CI phone (the identity for the first P).
        phone_context: int64 ``[n_phone, 3]``: left CI phone, right CI phone, word position (-1 for CI phones).
        phone_tmat: int64 ``[n_phone]``, transition matrix of each phone.
        phone_senones: int64 ``[n_phone, n_emit_state]``, the senone of each emitting state.
        sen_base: int64 ``[n_sen]``, the base CI phone of each senone (-1 if no phone uses it).
        sil: Index of ``"SIL"`` in ``ci_phones``.
    """

    ci_phones: tuple[str, ...]
    filler: np.ndarray
    n_emit_state: int
    n_ci_sen: int
    n_sen: int
    n_tmat: int
    phone_base: np.ndarray
    phone_context: np.ndarray
    phone_tmat: np.ndarray
    phone_senones: np.ndarray
    sen_base: np.ndarray
    sil: int


def read_mdef(path: str | Path) -> ModelDefinition:
    """Reads a binary model definition (``mdef``, "BMDF", homogeneous topology)."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 12:
        raise SphinxModelError(f"{path}: too short for a binary mdef")
    order = next((o for o in ("<", ">") if struct.unpack_from(o + "i", data, 0)[0] == _BMDF), None)
    if order is None:
        raise SphinxModelError(
            f"{path}: not a binary mdef (no 'BMDF' byte-order mark); text mdefs are not supported"
        )
    (version, desc_len), offset = _ints(data, 4, 2, order, path)
    if version > 1 or desc_len < 0:
        raise SphinxModelError(f"{path}: binary mdef format version {version} is not supported")
    counts, offset = _ints(data, offset + desc_len, 10, order, path)
    n_ci, n_phone, n_emit, n_ci_sen, n_sen, n_tmat, n_sseq, _n_ctx, n_tree, _sil = counts
    if min(n_ci, n_phone, n_emit, n_ci_sen, n_sen, n_tmat, n_sseq) <= 0 or n_phone < n_ci:
        raise SphinxModelError(
            f"{path}: invalid counts {counts} (heterogeneous topologies are not supported)"
        )
    names_start, names = offset, []
    for _ in range(n_ci):
        end = data.find(b"\0", offset)
        if end < 0:
            raise SphinxModelError(f"{path}: CI phone names are not NUL-terminated")
        names.append(data[offset:end].decode("ascii", "replace"))
        offset = end + 1
    offset = names_start + ((offset - names_start + 3) & ~3) + 8 * n_tree  # padding, then skip the CD tree
    sseq_count_at = offset + 12 * n_phone
    if len(data) < sseq_count_at + 4:
        raise SphinxModelError(f"{path}: file is truncated")
    phones = np.frombuffer(
        data,
        dtype=np.dtype([("ssid", order + "i4"), ("tmat", order + "i4"), ("info", "u1", 4)]),
        count=n_phone,
        offset=offset,
    )
    (sseq_size,), offset = _ints(data, sseq_count_at, 1, order, path)
    if sseq_size != n_sseq * n_emit or len(data) < offset + 2 * sseq_size:
        raise SphinxModelError(
            f"{path}: senone sequence table does not match {n_sseq} sequences of {n_emit} states"
        )
    sseq = np.frombuffer(data, dtype=order + "u2", count=sseq_size, offset=offset).reshape(n_sseq, n_emit)
    ssid = phones["ssid"].astype(np.int64)
    tmat = phones["tmat"].astype(np.int64)
    info = phones["info"].astype(np.int64)
    base = np.arange(n_phone)
    base[n_ci:] = info[n_ci:, 1]
    context = np.full((n_phone, 3), -1, dtype=np.int64)
    context[n_ci:] = info[n_ci:, [2, 3, 0]]
    if ssid.min() < 0 or ssid.max() >= n_sseq or tmat.min() < 0 or tmat.max() >= n_tmat or base.max() >= n_ci:
        raise SphinxModelError(
            f"{path}: a phone refers to a senone sequence, matrix or base phone out of range"
        )
    senones = sseq[ssid].astype(np.int64)
    if senones.max() >= n_sen:
        raise SphinxModelError(f"{path}: a senone id exceeds n_sen = {n_sen}")
    sen_base = np.full(n_sen, -1, dtype=np.int64)
    sen_base[senones.ravel()] = np.repeat(base, n_emit)
    if "SIL" not in names:
        raise SphinxModelError(f"{path}: no SIL phone among the CI phones")
    return ModelDefinition(
        ci_phones=tuple(names),
        filler=info[:n_ci, 0].astype(bool),
        n_emit_state=n_emit,
        n_ci_sen=n_ci_sen,
        n_sen=n_sen,
        n_tmat=n_tmat,
        phone_base=base,
        phone_context=context,
        phone_tmat=tmat,
        phone_senones=senones,
        sen_base=sen_base,
        sil=names.index("SIL"),
    )
