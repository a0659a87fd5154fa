"""``BlendshapeRig``: a neutral mesh plus K named target deltas; weights ``[B,T,K]`` -> vertices ``[B,T,V,3]``.

This is the face model of an avatar: what glTF morph targets, a folder of OBJ sculpts and ARKit-52 rigs all are.
A rig is built from arrays; :mod:`motion.face.blendshapes.io` reads it from files. :meth:`BlendshapeRig.to_arkit`
puts any rig in the canonical ARKit-52 order, so that weights from a model trained on ARKit names drive it.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from motion.face.base import FaceModel, FaceModelOutput
from motion.face.blendshapes.arkit import ARKIT_NAMES, name_key
from motion.face.blendshapes.errors import RigFormatError, RigNotFoundError

__all__ = ["BlendshapeRig", "ReorderedRig", "load_npz"]

ArrayLike = Tensor | np.ndarray


class BlendshapeRig(FaceModel):
    """Linear blendshape rig: ``vertices = neutral + sum_k weights[..., k] * deltas[k]``.

    Args:
        neutral: rest mesh ``[V,3]``.
        deltas: per-target vertex offsets from the neutral ``[K,V,3]`` (a glTF morph target's POSITION).
        names: the K target names, unique, in the order of ``deltas``.
        faces: triangles ``[F,3]`` (0-based vertex indices), or None for a rig without connectivity.

    Buffers are float32 (faces int64) and follow ``.to(device)``. ``faces`` is None when the rig has none.
    """

    neutral: Tensor
    deltas: Tensor

    def __init__(
        self,
        neutral: ArrayLike,
        deltas: ArrayLike,
        names: Sequence[str],
        faces: ArrayLike | None = None,
    ) -> None:
        super().__init__()
        neutral_t = torch.as_tensor(np.asarray(neutral) if not isinstance(neutral, Tensor) else neutral)
        deltas_t = torch.as_tensor(np.asarray(deltas) if not isinstance(deltas, Tensor) else deltas)
        names = tuple(str(n) for n in names)
        if neutral_t.dim() != 2 or neutral_t.shape[1] != 3:
            raise ValueError(f"neutral must be [V,3], got {tuple(neutral_t.shape)}.")
        num_vertices = neutral_t.shape[0]
        if deltas_t.dim() != 3 or deltas_t.shape[1:] != (num_vertices, 3):
            raise ValueError(
                f"deltas must be [K,{num_vertices},3] to match neutral, got {tuple(deltas_t.shape)}."
            )
        if len(names) != deltas_t.shape[0]:
            raise ValueError(f"{len(names)} names for {deltas_t.shape[0]} targets: give one name per target.")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"target names must be unique; repeated: {', '.join(repeated)}.")
        self.names: tuple[str, ...] = names
        self.register_buffer("neutral", neutral_t.detach().to(torch.float32).clone())
        self.register_buffer("deltas", deltas_t.detach().to(torch.float32).clone())
        if faces is None:
            self.register_buffer("faces", None)
        else:
            faces_t = self._as_long_faces(faces if isinstance(faces, Tensor) else np.asarray(faces, np.int64))
            if faces_t.numel() and (int(faces_t.min()) < 0 or int(faces_t.max()) >= num_vertices):
                raise ValueError(f"faces index vertices outside [0, {num_vertices}).")
            self.register_buffer("faces", faces_t)

    @property
    def num_vertices(self) -> int:
        """Number of mesh vertices V."""
        return int(self.neutral.shape[0])

    @property
    def num_faces(self) -> int:
        """Number of triangles F (0 for a rig without faces)."""
        return 0 if self.faces is None else int(self.faces.shape[0])

    @property
    def num_targets(self) -> int:
        """Number of blendshape targets K."""
        return int(self.deltas.shape[0])

    def extra_repr(self) -> str:
        return f"vertices={self.num_vertices}, targets={self.num_targets}, faces={self.num_faces}"

    def vertices(self, weights: Tensor) -> Tensor:
        """Blend the targets: differentiable in ``weights`` (and in the buffers, if they require grad).

        Args:
            weights: ``[B,T,K]`` or ``[T,K]``; any real values (ARKit weights live in [0,1], nothing clamps here).

        Returns:
            vertices ``[B,T,V,3]`` (B = 1 for ``[T,K]`` input), in the dtype of the rig.
        """
        w = weights.to(device=self.deltas.device, dtype=self.deltas.dtype)
        if w.dim() == 2:
            w = w.unsqueeze(0)
        if w.dim() != 3 or w.shape[-1] != self.num_targets:
            raise ValueError(
                f"weights must be [B,T,{self.num_targets}] or [T,{self.num_targets}], got {tuple(weights.shape)}."
            )
        b, t, k = w.shape
        flat = self.deltas.reshape(k, self.num_vertices * 3)
        offsets = (w.reshape(b * t, k) @ flat).reshape(b, t, self.num_vertices, 3)
        return self.neutral + offsets

    def forward(self, weights: Tensor) -> FaceModelOutput:  # type: ignore[override]
        """:meth:`vertices` as the face-model result (no landmarks, no joints)."""
        return FaceModelOutput(vertices=self.vertices(weights))

    def reorder(self, names: Sequence[str], key: Callable[[str], str] = name_key) -> ReorderedRig:
        """The rig with exactly ``names`` as targets, in that order, matched to this rig's targets by ``key``.

        A requested name that no target matches gets a zero delta (it then moves nothing); a target that no requested
        name matches is dropped. When two targets match the same name (``eyeBlink_L`` and ``eyeBlinkLeft`` in one
        file) the first is used and the second is dropped. Everything is reported in the result.

        Args:
            names: the target names of the new rig (unique).
            key: the comparison key of a name; the default :func:`~motion.face.blendshapes.arkit.name_key` ignores
                case, separators and the ``_L`` / ``Left`` spelling of sides.
        """
        first: dict[str, int] = {}
        for i, n in enumerate(self.names):
            first.setdefault(key(n), i)
        deltas = self.deltas.new_zeros(len(names), self.num_vertices, 3)
        sources: dict[str, str] = {}
        missing: list[str] = []
        used: set[int] = set()
        for j, n in enumerate(names):
            i = first.get(key(n))
            if i is None:
                missing.append(n)
                continue
            deltas[j] = self.deltas[i]
            sources[n] = self.names[i]
            used.add(i)
        dropped = tuple(n for i, n in enumerate(self.names) if i not in used)
        rig = BlendshapeRig(self.neutral, deltas, names, self.faces)
        return ReorderedRig(rig=rig, missing=tuple(missing), dropped=dropped, sources=sources)

    def to_arkit(self) -> ReorderedRig:
        """The rig in the canonical ARKit-52 order (:data:`~motion.face.blendshapes.arkit.ARKIT_NAMES`), names
        matched case-insensitively across the ``_L``/``_R``, ``Left``/``Right``, PascalCase and camelCase spellings;
        ARKit targets the rig lacks are zero deltas and listed in ``missing``, other targets in ``dropped``."""
        return self.reorder(ARKIT_NAMES)

    def save_npz(self, path: str | Path) -> Path:
        """Write ``neutral`` float32 ``[V,3]``, ``deltas`` float32 ``[K,V,3]``, ``names`` (a unicode string array,
        readable with ``allow_pickle=False``) and, when the rig has them, ``faces`` int64 ``[F,3]``.

        Returns:
            the path written (``.npz`` appended when missing, as numpy does).
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "neutral": self.neutral.detach().cpu().numpy(),
            "deltas": self.deltas.detach().cpu().numpy(),
            "names": np.array(self.names, dtype=np.str_).reshape(-1),
        }
        if self.faces is not None:
            arrays["faces"] = self.faces.detach().cpu().numpy().astype(np.int64)
        np.savez_compressed(path, **arrays)
        return path

    @classmethod
    def load_npz(cls, path: str | Path) -> BlendshapeRig:
        """Read a rig written by :meth:`save_npz` (see :func:`load_npz`)."""
        return load_npz(path)


@dataclass(frozen=True)
class ReorderedRig:
    """A rig put in a requested target order, and how its targets were matched.

    Attributes:
        rig: the new rig; its ``names`` are the requested names, in the requested order.
        missing: requested names no target matched (their deltas are zero), in the requested order.
        dropped: names of targets of the source rig that were not used, in the source order.
        sources: requested name -> the source target name it was taken from (e.g. ``eyeBlinkLeft -> EyeBlink_L``).
    """

    rig: BlendshapeRig
    missing: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: how many targets matched, then the missing and dropped names."""
        line = f"{len(self.sources)} of {self.rig.num_targets} targets matched"
        if self.missing:
            line += f"; missing (zero deltas): {', '.join(self.missing)}"
        if self.dropped:
            line += f"; dropped: {', '.join(self.dropped)}"
        return line


def load_npz(path: str | Path) -> BlendshapeRig:
    """Read a rig ``.npz``: ``neutral`` ``[V,3]``, ``deltas`` ``[K,V,3]``, ``names`` (strings, K), optional ``faces``
    ``[F,3]``, read with ``allow_pickle=False``.

    Raises:
        RigNotFoundError: the file does not exist.
        RigFormatError: not an npz, keys missing, object arrays, or shapes that disagree.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise RigNotFoundError(
            f"rig file not found: '{p}'; pass the path of a rig .npz (BlendshapeRig.save_npz)."
        )
    fix = (
        "write it with BlendshapeRig.save_npz (keys neutral [V,3], deltas [K,V,3], names [K], optional faces)"
    )
    if not zipfile.is_zipfile(p):  # np.load would take any other file for a pickle or an .npy
        raise RigFormatError(f"'{p}' is not a readable .npz archive (not a zip file); {fix}.")
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise RigFormatError(f"'{p}' is not a readable .npz archive ({exc}); {fix}.") from None
    except ValueError as exc:  # an object array under allow_pickle=False
        raise RigFormatError(
            f"'{p}' holds an object array ({exc}); store names as a string array (np.array(names, dtype=str))."
        ) from None
    lacking = [k for k in ("neutral", "deltas", "names") if k not in arrays]
    if lacking:
        raise RigFormatError(
            f"'{p}' has no {', '.join(lacking)} (it has {', '.join(sorted(arrays))}); {fix}."
        )
    names = arrays["names"]
    if names.dtype.kind not in "US":
        raise RigFormatError(f"'{p}' stores names as {names.dtype}, not strings; {fix}.")
    try:
        return BlendshapeRig(
            arrays["neutral"], arrays["deltas"], [str(n) for n in names.reshape(-1)], arrays.get("faces")
        )
    except ValueError as exc:
        raise RigFormatError(f"'{p}' is not a consistent rig: {exc} Fix: {fix}.") from None
