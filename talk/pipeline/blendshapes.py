"""ARKit-52 weights from any talk model, for avatars: its own weights, or solved on the procedural ARKit rig.

A model that generates ARKit weights (the flagship of ``experiments/synthetic/arkit_*.yaml``) hands them over as
they are (:class:`GeneratedWeights`, already within [0, 1]). A vertex, FLAME or BFM model of the procedural head's
topology (every synthetic config) animates a subject's template; :class:`ArkitWeights` places the procedural head's 52 ARKit targets on that template (the rig's deltas, the
template as its neutral) and solves bounded, temporally smoothed weights for the motion
(:class:`motion.face.blendshapes.BlendshapeSolver`). The vertices pass through once, a piece at a time (only
``[T, 52]`` numbers are kept), so long audio stays in bounded memory. Targets the procedural head cannot express
(``UNSUPPORTED_TARGETS``: it has no tongue) are 0 in every frame.

:func:`write_weights` writes them as a Live Link Face CSV (``.csv``) or a JSON weight matrix (``.json``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from talk.errors import UserError

__all__ = [
    "ArkitWeights",
    "GeneratedWeights",
    "WEIGHT_SUFFIXES",
    "check_weights_path",
    "weight_collector",
    "write_weights",
]

WEIGHT_SUFFIXES = (".csv", ".json")


def check_weights_path(path: str | Path, flag: str = "--export-blendshapes") -> Path:
    """``path`` as a weight file to write: ``.csv`` or ``.json`` (one-line error otherwise)."""
    path = Path(path)
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise UserError(
            f"{flag} {path}: name a .csv (Live Link Face, for Unreal / MetaHuman) or a .json (weight matrix) file."
        )
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory; name a .csv or .json file.")
    return path


class ArkitWeights:
    """Collects a model's vertex motion ``[m, V, 3]`` piece by piece and solves its ARKit-52 weights.

    Args:
        template: The subject's neutral mesh ``[V, 3]`` the motion animates.
    """

    def __init__(self, template: Tensor) -> None:
        from motion.face.blendshapes import BlendshapeRig, BlendshapeSolver, procedural_arkit_rig

        rig = procedural_arkit_rig()
        if rig.num_vertices != template.shape[0]:
            raise UserError(
                f"ARKit weights are solved on the procedural head's ARKit rig ({rig.num_vertices} vertices); this "
                f"model's mesh has {template.shape[0]}: train on the procedural head (experiments/synthetic/*)."
            )
        self.rig = BlendshapeRig(template.detach().cpu().float(), rig.deltas, rig.names, rig.faces)
        self.solver = BlendshapeSolver(self.rig)
        self._products: list[np.ndarray] = []

    def add(self, vertices: Tensor) -> None:
        """Take consecutive frames ``[m, V, 3]`` into account."""
        self._products.append(self.solver.rhs(vertices.detach().cpu()[None])[0])

    def add_params(self, params: Tensor) -> None:
        """Nothing: the weights come from the vertices."""

    def weights(self) -> np.ndarray:
        """``[T, 52]`` weights in ARKit order, in [0, 1], of every frame added."""
        k = int(self.solver.active.sum())
        products = np.concatenate(self._products) if self._products else np.zeros((0, k))
        return self.solver.solve_rhs(products, squeeze=True).weights.numpy()


class GeneratedWeights:
    """Collects the ARKit weights ``[m, 52]`` a model generates, piece by piece (the same interface as
    :class:`ArkitWeights`: vertices are not needed)."""

    def __init__(self) -> None:
        self._pieces: list[np.ndarray] = []

    def add(self, vertices: Tensor) -> None:
        """Nothing: the weights come with the parameters."""

    def add_params(self, params: Tensor) -> None:
        """Take a piece's weights ``[m, 52]`` (ARKit order) into account."""
        self._pieces.append(params.detach().cpu().numpy().astype(np.float64))

    def weights(self) -> np.ndarray:
        """``[T, 52]`` weights in ARKit order of every piece added."""
        return np.concatenate(self._pieces) if self._pieces else np.zeros((0, 52))


def weight_collector(model: object, template: Tensor) -> ArkitWeights | GeneratedWeights:
    """:class:`GeneratedWeights` for a model that generates ARKit weights, else :class:`ArkitWeights` on
    ``template``."""
    face_model = getattr(model, "face_model", None)
    if face_model is not None and face_model.motion_kind == "arkit":
        return GeneratedWeights()
    return ArkitWeights(template)


def write_weights(path: str | Path, weights: np.ndarray, fps: float) -> Path:
    """Write ``[T, 52]`` ARKit weights by the file's suffix: ``.csv`` (Live Link Face) or ``.json``."""
    from motion.face.blendshapes.weights_io import write_live_link_csv, write_weights_json

    path = check_weights_path(path)
    if path.suffix.lower() == ".csv":
        return write_live_link_csv(path, weights, fps)
    return write_weights_json(path, weights, fps)
