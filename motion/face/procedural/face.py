"""A licence-free procedural face model in the exact FLAME file format.

FLAME itself cannot be shipped (users download it from flame.is.tue.mpg.de), so tests, the synthetic dataset and
the demo use this generated head instead: same pickle keys, shapes and dtypes as FLAME 2020, same joints (root,
neck, jaw, left eye, right eye), so ``motion.face.flame.FLAME`` loads it unchanged. Unlike FLAME's PCA expression space,
the first expression columns are named articulations (``EXPRESSION_NAMES``) with 1.0 = full intensity.

Geometry lives in ``procedural_face_geometry`` / ``procedural_face_mesh``; weights, blendshapes and regions in
``procedural_face_rig``.
"""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from motion.face.procedural import geometry as geo
from motion.face.procedural import rig
from motion.face.procedural.mesh import build_mesh
from talk.files import write_atomic

__all__ = [
    "EXPRESSION_NAMES",
    "ProceduralFace",
    "ProceduralFacePaths",
    "build_procedural_face",
    "mediapipe_embedding_path",
    "write_procedural_face",
]

EXPRESSION_NAMES: tuple[str, ...] = (
    "lip_round",
    "lip_press",
    "smile",
    "stretch",
    "brow_raise",
    "brow_furrow",
    "blink_left",
    "blink_right",
    "upper_lip_raise",
    "lower_lip_depress",
    "cheek_puff",
)

MODEL_FILENAME = "face_model.pkl"
MASKS_FILENAME = "FLAME_masks.pkl"
LANDMARKS_FILENAME = "landmark_embedding.pkl"
MEDIAPIPE_FILENAME = "mediapipe_embedding.npz"


@dataclass(frozen=True)
class ProceduralFace:
    """A generated face model.

    Attributes:
        model: FLAME pickle content (``v_template [V,3]``, ``f [F,3]`` uint32, ``shapedirs [V,3,400]``,
            ``posedirs [V,3,36]``, ``J_regressor`` csc ``[5,V]``, ``weights [V,5]``, ``kintree_table [2,5]``,
            ``bs_style``, ``bs_type``), float64 like FLAME.
        masks: region name -> int64 vertex ids (FLAME_masks.pkl structure plus ``lip_upper_edge`` /
            ``lip_lower_edge``, paired left to right, and ``mouth_interior``).
        landmarks: static landmark embedding ``{"lmk_face_idx" [L], "lmk_b_coords" [L,3], "names" [L]}``.
        upper_lip: ``[n]`` vertex ids of the upper lip along the mouth slit (ordered by x).
        lower_lip: ``[n]`` matching lower-lip ids; their distance to ``upper_lip`` is the lip gap.
        expression_names: names of the first expression columns (``EXPRESSION_NAMES``).
    """

    model: dict[str, Any]
    masks: dict[str, np.ndarray]
    landmarks: dict[str, np.ndarray]
    upper_lip: np.ndarray
    lower_lip: np.ndarray
    expression_names: tuple[str, ...] = EXPRESSION_NAMES

    @property
    def num_vertices(self) -> int:
        return int(self.model["v_template"].shape[0])


@dataclass(frozen=True)
class ProceduralFacePaths:
    """Files written by ``write_procedural_face``.

    Attributes:
        model: the FLAME-format model pickle (``face_model.pkl``).
        masks: region masks (``FLAME_masks.pkl``).
        landmarks: static landmark embedding (``landmark_embedding.pkl``).
    """

    model: Path
    masks: Path
    landmarks: Path


def _landmarks(mesh, faces: np.ndarray) -> dict[str, np.ndarray]:
    """A small named landmark set (eye corners, nose, mouth, chin) as triangle + barycentric coordinates."""
    v = mesh.vertices
    targets = {
        "right_eye_outer": (-geo.EYE_X - 0.0125, 0.0015, None),
        "right_eye_inner": (-geo.EYE_X + 0.0125, 0.0005, None),
        "left_eye_inner": (geo.EYE_X - 0.0125, 0.0005, None),
        "left_eye_outer": (geo.EYE_X + 0.0125, 0.0015, None),
        "nose_bridge": (0.0, 0.008, None),
        "nose_tip": (0.0, -0.029, None),
        "mouth_right": (-geo.MOUTH_HALF_WIDTH, geo.Y_MOUTH, None),
        "upper_lip_top": (0.0, geo.Y_MOUTH + 0.010, None),
        "lower_lip_bottom": (0.0, geo.Y_MOUTH - 0.012, None),
        "mouth_left": (geo.MOUTH_HALF_WIDTH, geo.Y_MOUTH, None),
        "chin": (0.0, -0.097, None),
    }
    skin_faces = np.nonzero((mesh.part[faces] == 0).all(1))[0]
    cent = v[faces[skin_faces]].mean(1)
    fidx, bary = [], []
    for x, y, _ in targets.values():
        # nearest front-facing skin triangle to the (x, y) target, seen from the front
        cand = cent[:, 2] > 0.03
        dist = np.where(cand, (cent[:, 0] - x) ** 2 + (cent[:, 1] - y) ** 2 - 1e-4 * cent[:, 2], np.inf)
        t = skin_faces[int(np.argmin(dist))]
        fidx.append(t)
        bary.append([1 / 3, 1 / 3, 1 / 3])
    return {
        "lmk_face_idx": np.asarray(fidx, np.int64),
        "lmk_b_coords": np.asarray(bary, np.float64),
        "names": np.asarray(list(targets), dtype=object),
    }


@lru_cache(maxsize=4)
def _build(seed: int) -> ProceduralFace:
    mesh = build_mesh()
    shapedirs = np.concatenate([rig.shape_basis(mesh, seed), rig.expression_basis(mesh)], axis=2)
    model = {
        "v_template": mesh.vertices.astype(np.float64),
        "f": mesh.faces.astype(np.uint32),
        "shapedirs": shapedirs.astype(np.float64),
        "posedirs": rig.pose_correctives(mesh).astype(np.float64),
        "J_regressor": rig.joint_regressor(mesh).tocsc(),
        "weights": rig.skinning_weights(mesh).astype(np.float64),
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    return ProceduralFace(
        model=model,
        masks=rig.region_masks(mesh),
        landmarks=_landmarks(mesh, mesh.faces),
        upper_lip=mesh.upper_lip.astype(np.int64),
        lower_lip=mesh.lower_lip.astype(np.int64),
    )


def build_procedural_face(seed: int = 0) -> ProceduralFace:
    """Generate the procedural face model in memory.

    The neutral geometry, the named shape columns (0-15) and the expressions are fixed; ``seed`` only draws the
    random smooth identity columns 16-39 (columns 40-299 and expression columns 11-99 are zero).

    Args:
        seed: seed of the random identity columns.

    Returns:
        A ``ProceduralFace`` (a private copy: callers may modify its arrays).
    """
    return copy.deepcopy(_build(int(seed)))


def write_procedural_face(out_dir: str | Path, seed: int = 0) -> ProceduralFacePaths:
    """Write ``face_model.pkl`` (FLAME pickle structure), ``FLAME_masks.pkl`` and ``landmark_embedding.pkl``.

    Args:
        out_dir: output folder (created if needed).
        seed: seed of the random identity columns (see ``build_procedural_face``).

    Returns:
        The written paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    face = _build(int(seed))
    paths = ProceduralFacePaths(out / MODEL_FILENAME, out / MASKS_FILENAME, out / LANDMARKS_FILENAME)
    # protocol 2 keeps the files readable the way FLAME's are (latin1, old protocol)
    write_atomic(paths.model, lambda fh: pickle.dump(face.model, fh, protocol=2))
    write_atomic(paths.masks, lambda fh: pickle.dump(face.masks, fh, protocol=2))
    lmk = {k: v for k, v in face.landmarks.items() if k != "names"}
    lmk["names"] = [str(n) for n in face.landmarks["names"]]
    write_atomic(paths.landmarks, lambda fh: pickle.dump(lmk, fh, protocol=2))
    return paths


def mediapipe_embedding_path() -> Path:
    """The shipped MediaPipe FaceMesh embedding of the procedural head (all 468 landmarks, seed-independent).

    FLAME's ``mediapipe_landmark_embedding.npz`` format (``lmk_face_idx``, ``lmk_b_coords``, ``landmark_indices``,
    plus a ``source`` note), so ``FLAME(model_path, landmark_embedding_path=mediapipe_embedding_path())`` gives the
    468 detector points as ``FaceModelOutput.landmarks``; ``motion.face.flame_io.load_mediapipe_embedding`` reads
    it. Built by ``talk.track.embedding.build_procedural_embedding`` from the detector on renders of the template.
    """
    return Path(__file__).with_name(MEDIAPIPE_FILENAME)
