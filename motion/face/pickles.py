"""The one reader of the pickles a user names: FLAME, VOCASET and landmark-embedding files.

The FLAME model (``generic_model.pkl``, ``flame2023.pkl``), ``FLAME_masks.pkl``, the static landmark embeddings,
the VOCASET pickles (``templates.pkl``, ``raw_audio_fixed.pkl``, ``subj_seq_to_idx.pkl``) and DECA's
``landmark_embedding.npy`` (an object array, i.e. a pickle after the ``.npy`` header) are pickles. A pickle may
name any importable callable and have it called while loading (``os.system`` included), and these files come from
download pages and other people's folders, so loading them is the trust boundary. :class:`RestrictedUnpickler`
resolves only the globals that such data needs, each of which builds data and runs nothing the file names:

- numpy arrays, dtypes and scalars (``numpy.core`` is read as ``numpy._core``, its numpy 2 name);
- plain values: ``object``, ``set``, ``frozenset``, ``slice``, ``complex``, ``bytes``, ``bytearray``,
  ``collections.OrderedDict``, and ``_codecs.encode`` with latin1 (how protocol 2 writes bytes);
- the ``copyreg`` object constructors, only for the classes admitted here;
- any ``chumpy`` class, as :class:`ChumpyStandIn` (keeps the wrapped array; chumpy is never imported);
- scipy.sparse csc/csr/coo matrices and arrays, as stand-ins rebuilt from their index arrays;
- torch tensors (DECA stores its dynamic landmark embedding as tensors): the storage bytes are read by
  ``torch.load(weights_only=True)`` and the tensor comes back as a numpy array.

Every other global raises :class:`UnsafePickleError` before anything it names is imported. Admitted callables
reach the pickle wrapped in :class:`_Guarded`, which checks its arguments and cannot be modified by the pickle.
"""

from __future__ import annotations

import collections
import copyreg
import importlib
import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from talk.errors import UserError

__all__ = [
    "ChumpyStandIn",
    "RestrictedUnpickler",
    "SparseStandIn",
    "UnsafePickleError",
    "load_npy",
    "load_pickle",
    "loads_pickle",
    "refusal_message",
    "to_plain",
]


class UnsafePickleError(pickle.UnpicklingError, UserError):
    """A pickle names a global outside the allow-list (code, not data); nothing it names was imported or run.

    Attributes:
        global_name: ``module.name`` of the refused global.
    """

    def __init__(self, global_name: str, why: str = "") -> None:
        self.global_name = global_name
        super().__init__(
            f"refusing to load {global_name} from a pickle: {why or 'it is not on the allow-list'}; only numpy "
            "arrays, scipy sparse matrices, chumpy-wrapped arrays, torch tensors and plain containers are admitted"
        )


def refusal_message(path: str | Path, kind: str, exc: UnsafePickleError) -> str:
    """One line for a loader's own error: names the file, says it holds code rather than ``kind`` data.

    Args:
        path: The refused file.
        kind: What the file should hold ("FLAME model", "VOCASET", "templates", ...).
        exc: The refusal.

    Returns:
        The message, one line.
    """
    return (
        f"'{path}' holds code rather than {kind} data (it names {exc.global_name}, which no {kind} file contains); "
        "refusing to load it: use the file as published."
    )


# -------------------------------------------------------------------------------------------------- stand-ins
class ChumpyStandIn:
    """Receives the pickled state of any chumpy object; ``value`` is the wrapped array (``state["x"]``).

    chumpy's ``Ch.__getstate__`` pickles the instance ``__dict__`` minus its weak-reference caches; the wrapped
    value lives under ``"x"``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        # chumpy pickles __dict__; tolerate the (state, slotstate) tuple form as well.
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = state[0]
        self.state = state if isinstance(state, dict) else {"x": state}

    @property
    def value(self) -> Any:
        """The wrapped value with stand-ins replaced (raises ValueError for a lazy chumpy expression)."""
        state = getattr(self, "state", {})  # NEWOBJ without BUILD never ran __init__
        if "x" not in state:
            raise ValueError(
                "a chumpy object in the file has no stored value 'x' (it is a lazy chumpy expression, not an "
                "array); re-export the file with plain arrays or use the official file"
            )
        return to_plain(state["x"])


class SparseStandIn:
    """Receives the pickled ``__dict__`` of a scipy sparse matrix written by any scipy version."""

    fmt = "csc"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}

    def rebuild(self):  # noqa: ANN201 - a scipy.sparse matrix
        """The matrix, rebuilt from ``data``/``indices``/``indptr`` (csc, csr) or ``data``/``row``/``col`` (coo)."""
        import scipy.sparse as sp  # deferred: only FLAME files need it, and it costs start-up

        st = getattr(self, "state", {})
        shape = st.get("_shape", st.get("shape"))
        fmt = st.get("format", self.fmt)
        if fmt in ("csc", "csr") and {"data", "indices", "indptr"} <= st.keys():
            cls = sp.csc_matrix if fmt == "csc" else sp.csr_matrix
            return cls(
                (np.asarray(st["data"]), np.asarray(st["indices"]), np.asarray(st["indptr"])), shape=shape
            )
        if fmt == "coo" and {"data", "row", "col"} <= st.keys():
            return sp.coo_matrix(
                (np.asarray(st["data"]), (np.asarray(st["row"]), np.asarray(st["col"]))), shape=shape
            ).tocsc()
        raise ValueError(f"unsupported pickled sparse matrix format {fmt!r}")


_SPARSE = {f"{fmt}_{kind}": fmt for fmt in ("csc", "csr", "coo") for kind in ("matrix", "array")}


def _sparse_class(fmt: str) -> type:
    return type(f"_Sparse_{fmt}", (SparseStandIn,), {"fmt": fmt})


def to_plain(obj: Any) -> Any:
    """Recursively replaces stand-ins by numpy arrays / scipy sparse matrices (inside dicts and lists).

    Args:
        obj: What :func:`load_pickle` returned.

    Returns:
        ``obj`` with every stand-in replaced; other values unchanged.

    Raises:
        ValueError: a chumpy object holds no value or a sparse matrix has an unknown layout.
    """
    if isinstance(obj, ChumpyStandIn):
        return np.asarray(obj.value)
    if isinstance(obj, SparseStandIn):
        return obj.rebuild()
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    return obj


# -------------------------------------------------------------------------------------------- admitted callables
def _numpy_core(submodule: str) -> Any:
    """``numpy._core.<submodule>`` (numpy 2), or ``numpy.core.<submodule>`` on numpy 1."""
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{submodule}")


_ADMITTED_TYPES: frozenset[type] = frozenset(
    {object, set, frozenset, slice, complex, bytes, bytearray, collections.OrderedDict, np.ndarray, np.dtype}
)


def _admitted_class(cls: Any) -> bool:
    return isinstance(cls, type) and (
        cls in _ADMITTED_TYPES or issubclass(cls, (ChumpyStandIn, SparseStandIn))
    )


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafePickleError("numpy._core.multiarray._reconstruct", f"it was asked to build {subtype!r}")
    return _numpy_core("multiarray")._reconstruct(subtype, shape, dtype)


def _scalar(dtype: Any, *args: Any) -> Any:
    if not isinstance(dtype, np.dtype):
        raise UnsafePickleError("numpy._core.multiarray.scalar", f"its dtype is a {type(dtype).__name__}")
    return _numpy_core("multiarray").scalar(dtype, *args)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("numpy._core.numeric._frombuffer", f"it was asked for dtype {dtype!r}")
    return _numpy_core("numeric")._frombuffer(buf, dtype, shape, order)


def _encode(text: Any, encoding: Any) -> bytes:
    # Protocol 2 writes bytes as _codecs.encode(text, "latin1"); no other codec is ever needed.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("_codecs.encode", f"it was called with encoding {encoding!r}")
    return text.encode("latin1")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    if not (_admitted_class(cls) and _admitted_class(base)):
        raise UnsafePickleError("copyreg._reconstructor", f"it was asked to build {cls!r} from {base!r}")
    return copyreg._reconstructor(cls, base, state)


def _newobj(cls: Any, *args: Any) -> Any:
    if not _admitted_class(cls):
        raise UnsafePickleError("copyreg.__newobj__", f"it was asked to build {cls!r}")
    return cls.__new__(cls, *args)


def _storage_from_bytes(data: Any) -> Any:
    import torch  # deferred: only files holding tensors need it

    if not isinstance(data, bytes | bytearray):
        raise UnsafePickleError("torch.storage._load_from_bytes", f"its payload is a {type(data).__name__}")
    storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    if not isinstance(storage, torch.storage.TypedStorage | torch.UntypedStorage):
        raise UnsafePickleError("torch.storage._load_from_bytes", f"it holds a {type(storage).__name__}")
    return storage


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> np.ndarray:
    import torch

    ints = all(isinstance(v, int) for v in (offset, *size, *stride))
    if not isinstance(storage, torch.storage.TypedStorage | torch.UntypedStorage) or not ints:
        raise UnsafePickleError("torch._utils._rebuild_tensor_v2", "its arguments are not a tensor's storage")
    # Requires-grad flags and backward hooks (the remaining arguments) are dropped: the value is plain data.
    return torch._utils._rebuild_tensor(storage, offset, tuple(size), tuple(stride)).detach().numpy().copy()


class _Guarded:
    """An admitted callable as the pickle sees it: callable, but a BUILD opcode cannot rebind anything on it."""

    __slots__ = ("_fn", "_name")

    def __init__(self, name: str, fn: Any) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setattr__(self, key: str, value: Any) -> None:
        raise UnsafePickleError(self._name, "a pickle may not modify it")

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError(self._name, "a pickle may not modify it")


def _admitted_globals() -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "scalar"): _scalar,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("_codecs", "encode"): _encode,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
        ("torch._utils", "_rebuild_tensor"): _tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _tensor,
    }
    for module in ("copyreg", "copy_reg"):  # copy_reg: its Python 2 name
        out[(module, "_reconstructor")] = _reconstructor
        out[(module, "__newobj__")] = _newobj
    for module in ("builtins", "__builtin__"):
        for cls in (object, set, frozenset, slice, complex, bytes, bytearray):
            out[(module, cls.__name__)] = cls
    return {k: v if isinstance(v, type) else _Guarded(".".join(k), v) for k, v in out.items()}


_ADMITTED = _admitted_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` whose ``find_class`` resolves only the allow-list of this module.

    Construct it like ``pickle.Unpickler`` (FLAME and VOCASET pickles need ``encoding="latin1"``); use
    :func:`load_pickle` for files.
    """

    def find_class(self, module: str, name: str) -> Any:
        """Returns the admitted object for ``module.name``.

        Raises:
            UnsafePickleError: ``module.name`` is not admitted (nothing is imported).
        """
        if module == "numpy.core" or module.startswith("numpy.core."):
            module = "numpy._core" + module[len("numpy.core") :]  # numpy 2 renamed numpy.core
        found = _ADMITTED.get((module, name))
        if found is not None:
            return found
        if module == "chumpy" or module.startswith("chumpy."):
            return ChumpyStandIn
        if module.startswith("scipy.sparse") and name in _SPARSE:
            return _sparse_class(_SPARSE[name])
        raise UnsafePickleError(f"{module}.{name}")


def loads_pickle(data: bytes | BinaryIO) -> Any:
    """Unpickles bytes or an open binary file with :class:`RestrictedUnpickler` (latin1, for Python 2 pickles).

    Args:
        data: The pickle's bytes, or a binary file positioned at its start.

    Returns:
        The unpickled object; stand-ins are returned as they are (:func:`to_plain` turns them into arrays).

    Raises:
        UnsafePickleError: the pickle names a global outside the allow-list.
    """
    fh = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    return RestrictedUnpickler(fh, encoding="latin1").load()


def load_pickle(path: str | Path) -> Any:
    """Reads a pickle file with :class:`RestrictedUnpickler` (latin1, for Python 2 pickles).

    Args:
        path: The pickle file.

    Returns:
        The unpickled object; stand-ins are returned as they are (:func:`to_plain` turns them into arrays).

    Raises:
        UnsafePickleError: the pickle names a global outside the allow-list.
        OSError, pickle.UnpicklingError, ...: the file is unreadable or not a pickle.
    """
    with open(path, "rb") as fh:
        return loads_pickle(fh)


def load_npy(path: str | Path) -> np.ndarray:
    """Reads a ``.npy`` file; an object array (a pickle after the header) goes through :class:`RestrictedUnpickler`.

    numpy writes an object array as its ``.npy`` header followed by a pickle of the whole array; that pickle is
    read here with the allow-list instead of ``np.load(allow_pickle=True)``. Any other ``.npy`` is read by
    ``np.load(allow_pickle=False)``.

    Args:
        path: The ``.npy`` file.

    Returns:
        The array (DECA's ``landmark_embedding.npy`` gives a 0-d object array; ``.item()`` is its dict).

    Raises:
        UnsafePickleError: the object payload names a global outside the allow-list.
        ValueError: the file is not a ``.npy`` file, or its payload is not an array.
    """
    from numpy.lib import format as npy_format

    with open(path, "rb") as fh:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            _, _, dtype = npy_format.read_array_header_1_0(fh)
        elif version == (2, 0):
            _, _, dtype = npy_format.read_array_header_2_0(fh)
        else:  # version 3 only adds utf8 field names; np.load refuses object payloads on its own
            dtype = None
        if dtype is not None and dtype.hasobject:
            array = loads_pickle(fh)
            if not isinstance(array, np.ndarray):
                raise ValueError(f"the object payload of {path} is a {type(array).__name__}, not an array")
            return array
    return np.load(path, allow_pickle=False)
