"""The face model as the generator uses it: FLAME with a still head (only the jaw rotates), and lip contact.

VOCASET meshes are head-stabilised, so the synthetic speakers never move their head or eyes. With the global,
neck and eye rotations at zero, FLAME's linear blend skinning reduces to one rigid jaw rotation blended by the
jaw weights; evaluating that directly, in a coordinate-major layout where each frame's rotation is one small
matrix product, is several times faster than the general skinning and is what fits hundreds of sentences in a
minute. ``JawFace`` is built from a loaded ``motion.face.flame.FLAME`` (same file, same buffers) and a test checks
it against ``FLAME.forward``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from motion.face.flame import FLAME, batch_rodrigues
from motion.face.flame_io import load_flame_masks
from motion.face.procedural.face import EXPRESSION_NAMES
from talk.errors import UserError
from talk.synth.articulation import LipContact

_JAW = 2  # FLAME joint order: root, neck, jaw, left eye, right eye


CONTACT_JAW = (0.0, 0.03, 0.06, 0.1, 0.15, 0.25)  # jaw angles (radians) at which lip contact is calibrated


class FaceModelError(UserError, ValueError):
    """The face-model files do not have what the generator needs."""


@dataclass(frozen=True)
class JawFace:
    """FLAME restricted to poses where only the jaw rotates, precomputed for speed.

    Args:
        template: ``[3, V]`` rest vertices, coordinate-major.
        dirs: ``[S+E+9, 3V]`` shape, expression and jaw pose-corrective directions, coordinate-major.
        joint: ``[3]`` jaw joint of the rest mesh.
        joint_dirs: ``[S+E, 3]`` jaw-joint displacement per shape / expression coefficient (the joint is
            regressed from the shaped mesh, so expressions move it too).
        weights: ``[V]`` jaw skinning weights.
        n_shape: Shape coefficients S.
        n_expression: Expression coefficients E.
    """

    template: Tensor
    dirs: Tensor
    joint: Tensor
    joint_dirs: Tensor
    weights: Tensor
    n_shape: int
    n_expression: int

    @classmethod
    def from_flame(cls, flame: FLAME) -> JawFace:
        """Precomputes the jaw-only model from a loaded FLAME (its shapedirs, posedirs, regressor,
        weights)."""
        n_v = flame.num_vertices
        blend = flame.shapedirs.view(-1, n_v, 3)  # [S+E, V, 3]
        pose = flame.posedirs[9 * (_JAW - 1) : 9 * _JAW].view(9, n_v, 3)  # rows of the jaw's (R - I) entries
        regressor = flame.J_regressor[_JAW]
        return cls(
            template=flame.v_template.T.contiguous(),
            dirs=torch.cat([blend, pose]).permute(0, 2, 1).reshape(-1, 3 * n_v).contiguous(),
            joint=regressor @ flame.v_template,
            joint_dirs=torch.einsum("v,svc->sc", regressor, blend),
            weights=flame.lbs_weights[:, _JAW].contiguous(),
            n_shape=flame.n_shape,
            n_expression=flame.n_expression,
        )

    @property
    def num_vertices(self) -> int:
        """V."""
        return int(self.template.shape[1])

    def __call__(self, shape: np.ndarray, expression: np.ndarray, jaw_pose: np.ndarray) -> np.ndarray:
        """Meshes of one speaker, all frames in one batch.

        ``v = v_posed + w_jaw * (R_jaw - I)(v_posed - J_jaw)``, where ``v_posed`` has the shape, expression
        and jaw pose-corrective offsets and ``J_jaw`` is regressed from the mesh before pose correctives (as
        in FLAME).

        Args:
            shape: ``[n_shape]`` identity coefficients.
            expression: ``[T, n_expression]``.
            jaw_pose: ``[T, 3]`` axis-angle.

        Returns:
            ``[T, V, 3]`` float32 vertices.
        """
        dtype = self.template.dtype
        n = len(expression)
        with torch.no_grad():
            betas = torch.cat(
                [
                    torch.as_tensor(np.asarray(shape), dtype=dtype)[None].expand(n, -1),
                    torch.as_tensor(np.asarray(expression), dtype=dtype),
                ],
                dim=1,
            )
            rot_minus_i = batch_rodrigues(torch.as_tensor(np.asarray(jaw_pose), dtype=dtype)) - torch.eye(
                3, dtype=dtype
            )
            coeffs = torch.cat([betas, rot_minus_i.reshape(n, 9)], dim=1)
            v_posed = torch.addmm(self.template.reshape(1, -1), coeffs, self.dirs).view(n, 3, -1)
            joint = self.joint + betas @ self.joint_dirs  # [T, 3]
            swing = torch.bmm(rot_minus_i, v_posed - joint[:, :, None])  # [T, 3, V]
            verts = torch.addcmul(v_posed, swing, self.weights)
            return verts.transpose(1, 2).numpy().astype(np.float32)


def load_face(face_model_path: str | Path, n_shape: int, n_expression: int | None = None) -> JawFace:
    """Loads the FLAME-format face model for the generator.

    Args:
        face_model_path: face_model.pkl (procedural face) or any FLAME file.
        n_shape: Shape coefficients the speakers use.
        n_expression: Expression coefficients; defaults to the named components (``EXPRESSION_NAMES``).
    """
    n_exp = len(EXPRESSION_NAMES) if n_expression is None else n_expression
    return JawFace.from_flame(FLAME(str(face_model_path), n_shape=n_shape, n_expression=n_exp))


def lip_pairs(masks_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Matching upper / lower lip-edge vertex ids along the mouth slit (their distance is the lip gap).

    Args:
        masks_path: FLAME_masks.pkl of the procedural face (it holds "lip_upper_edge" and "lip_lower_edge").
    """
    masks = load_flame_masks(masks_path)
    if "lip_upper_edge" not in masks or "lip_lower_edge" not in masks:
        raise FaceModelError(
            f"'{masks_path}' has no lip_upper_edge / lip_lower_edge regions; the synthetic "
            "generator needs the procedural face's masks (motion.face.procedural.face)."
        )
    return np.asarray(masks["lip_upper_edge"], np.int64), np.asarray(masks["lip_lower_edge"], np.int64)


def calibrate_lip_contact(
    face: JawFace, shape: np.ndarray, upper: np.ndarray, lower: np.ndarray
) -> LipContact:
    """Finds, per jaw angle, the lip_press that brings the middle of the lips exactly into contact.

    Contact is judged vertically (upper-lip edge height minus lower-lip edge height): the jaw also pulls the
    lower lip back by a millimetre or so, which no press can undo and which does not open the mouth. The mesh
    is linear in lip_press at a fixed jaw, so the least-squares press has a closed form from two evaluations
    per angle.

    Args:
        face: Loaded face model.
        shape: ``[n_shape]`` speaker identity (lip thickness changes the answer).
        upper: ``[n]`` upper-lip edge ids; the middle half of the slit is used (the corners are always
            closed).
        lower: ``[n]`` matching lower-lip ids.
    """
    jaw = np.asarray(CONTACT_JAW)
    expr = np.zeros((2 * len(jaw), face.n_expression))
    expr[1::2, EXPRESSION_NAMES.index("lip_press")] = 1.0
    pose = np.zeros((2 * len(jaw), 3))
    pose[:, 0] = np.repeat(jaw, 2)
    verts = face(shape, expr, pose).astype(np.float64)
    n = len(upper)
    mid = slice(n // 4, n - n // 4)
    gap = verts[:, upper[mid], 1] - verts[:, lower[mid], 1]  # [2K, n/2] vertical opening
    g0, d = gap[0::2], gap[1::2] - gap[0::2]
    press = -(g0 * d).sum(axis=1) / np.maximum((d * d).sum(axis=1), 1e-12)
    press[0] = 0.0  # lips touch at rest
    return LipContact(jaw, press)
