"""Fit a FLAME-format face model to MediaPipe FaceMesh landmarks of one photo.

    from motion.face.flame import FLAME
    from motion.face.procedural.face import mediapipe_embedding_path
    from talk.track.fit import fit_image
    model = FLAME("face_model.pkl", n_shape=40, n_expression=11, landmark_embedding_path=str(mediapipe_embedding_path()))
    result = fit_image("portrait.jpg", model)      # FitResult: params, camera, vertices, residuals

The camera is a pinhole at the origin looking down -z (``render.Camera`` with ``R = I``, ``T = 0``), focal length
fixed (by default 1.2 times the image's long side, about a 45 degree field of view). The head is posed by the
model's global rotation and translation. The solver is :func:`~talk.track.fit_video.fit_sequence`'s with one
frame (Levenberg-Marquardt in float64 on the CPU, deterministic): the rigid pose from a few stable points (eye
corners, nose, mouth corners, chin), initialised from the eye-corner distance; then everything (pose, translation,
shape, expression, jaw) on every covered landmark, with L2 priors on shape, expression and jaw. Residuals are measured in units of the outer-eye-corner distance (FaceMesh 33 and 263), so the
prior weights do not depend on the image size.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from motion.face.flame import FLAME, FLAMEParams, batch_rodrigues, lbs
from render import Camera
from talk.errors import UserError

__all__ = ["FitError", "FitResult", "fit_image"]

EYE_OUTER = (33, 263)  # subject's right and left outer eye corners
# eye corners, nose tip and bridge, mouth corners, chin, forehead
STABLE = (33, 133, 362, 263, 1, 168, 61, 291, 152, 10)  # fmt: skip


class FitError(UserError, ValueError):
    """The face model or the landmarks cannot be fitted (no embedding, too few covered landmarks)."""


@dataclass(frozen=True)
class FitResult:
    """A fitted face.

    Attributes:
        params: Fitted ``FLAMEParams`` (B = T = 1): shape [1, S], expression [1, 1, E], jaw_pose, global_pose and
            translation [1, 1, 3]; neck and eyes are left at zero.
        camera: The pinhole camera (R = I, T = 0, fixed focal) the landmarks were fitted through.
        vertices: [V, 3] fitted mesh in camera-aligned world coordinates (metres).
        landmarks: [L, 2] projected model landmarks (x, y px), for the FaceMesh points in ``landmark_indices``.
        targets: [L, 2] the detector's points they were fitted to.
        landmark_indices: [L] FaceMesh index of each row.
        residual_px: [L] per-landmark distance between projection and target, pixels.
        mean_residual_px: Mean of ``residual_px``.
        eye_distance_px: Distance of the target outer eye corners (FaceMesh 33 and 263), pixels.
        normalized_residual: ``mean_residual_px / eye_distance_px``.
    """

    params: FLAMEParams
    camera: Camera
    vertices: Tensor
    landmarks: np.ndarray
    targets: np.ndarray
    landmark_indices: np.ndarray
    residual_px: np.ndarray
    mean_residual_px: float
    eye_distance_px: float
    normalized_residual: float


class _LandmarkRig:
    """The model reduced to its landmark points, for fast fitting (the same numbers as the full model).

    FLAME poses every vertex; the fit needs only the landmarks, each a barycentric mix of three vertices. With
    FLAME's skeleton (root; neck; jaw and eyes under the neck) and neck and eyes at rest, every vertex moves by the
    root's transform plus its jaw weight w times the jaw's rotation about the jaw joint J2:
    ``x' = R_g (x - J0 + w (R_j - I)(x - J2)) + J0 + t``. Mixed over a triangle with barycentrics b this needs only
    ``P = sum b x``, ``Q = sum b w x`` and ``W = sum b w``: ``R_g (P - J0 + (R_j - I)(Q - W J2)) + J0 + t``, and P,
    Q and the joints are linear in the blendshape coefficients and the jaw's pose-corrective feature, so each is a
    precomputed basis: one small matrix product per frame instead of skinning a mesh. Other skeletons fall back
    to :func:`~motion.face.flame.lbs` on the landmark triangles' vertices.
    """

    def __init__(self, model: FLAME) -> None:
        f64 = torch.float64
        tri = model.faces[model.lmk_faces_idx]  # [L, 3]
        keep, local = torch.unique(tri.reshape(-1), return_inverse=True)
        self.tri = local.reshape(tri.shape)
        self.bary = model.lmk_bary_coords.to(f64)
        n_v, n_k, n_j = model.num_vertices, len(keep), model.n_joints
        self.n_shape, self.n_expression = model.n_shape, model.n_expression
        self.n_keep, self.parents = n_k, model.parents
        dirs = model.shapedirs.to(f64).reshape(-1, n_v, 3)  # [S+E, V, 3]
        jreg = model.J_regressor.to(f64)
        template = model.v_template.to(f64)
        posedirs = model.posedirs.to(f64).reshape(-1, n_v, 3)[:, keep]  # [9 (J-1), K, 3]
        weights = model.lbs_weights.to(f64)[keep]  # [K, J]
        self.closed_form = list(model.parents) == [-1, 0, 1, 1, 1]
        if self.closed_form:
            n_l = len(self.tri)
            # mix[l, k]: barycentric weight of kept vertex k in landmark l; jaw-weighted for Q
            mix = torch.zeros(n_l, n_k, dtype=f64)
            mix.scatter_add_(1, self.tri, self.bary)
            mix_w = mix * weights[:, 2]
            self.jaw_mix = mix_w.sum(1)[:, None]  # [L, 1]: W
            self.n_points = n_l

            joints = [0, 2]  # root and jaw
            rows = dirs[:, keep]
            # per part (P, Q, root and jaw joints): template [n], coefficient basis [S+E, n], jaw feature [9, n]
            self.parts = [
                (mix @ template[keep], mix @ rows, mix @ posedirs[9:18]),
                (mix_w @ template[keep], mix_w @ rows, mix_w @ posedirs[9:18]),
                (jreg[joints] @ template, torch.einsum("jv,svc->sjc", jreg[joints], dirs), None),
            ]
            self.parts = [
                (t.reshape(-1), d.flatten(1), None if f is None else f.flatten(1)) for t, d, f in self.parts
            ]
        else:
            self.template = torch.cat([template[keep], jreg @ template]).reshape(-1)
            self.dirs = torch.cat([dirs[:, keep], torch.einsum("jv,svc->sjc", jreg, dirs)], 1).flatten(1)
            self.posedirs = torch.cat([posedirs, posedirs.new_zeros(len(posedirs), n_j, 3)], 1).flatten(1)
            self.jreg = torch.cat([torch.zeros(n_j, n_k, dtype=f64), torch.eye(n_j, dtype=f64)], 1)
            self.weights = torch.cat([weights, torch.eye(n_j, dtype=f64)])

    def subset(self, rows: list[int]) -> _LandmarkRig:
        """The same rig restricted to the landmarks ``rows`` (closed form only): cheaper solves on a few points."""
        assert self.closed_form, "subset needs FLAME's skeleton"
        out = copy.copy(self)
        index = torch.as_tensor(rows)

        def pick(a: Tensor) -> Tensor:  # [..., L * 3] -> [..., len(rows) * 3]
            return a.reshape(*a.shape[:-1], -1, 3)[..., index, :].flatten(-2)

        (tp, dp, fp), (tq, dq, fq), joints = self.parts
        out.parts = [(pick(tp), pick(dp), pick(fp)), (pick(tq), pick(dq), pick(fq)), joints]
        out.jaw_mix, out.n_points = self.jaw_mix[index], len(rows)
        out.tri, out.bary = self.tri[index], self.bary[index]
        return out

    def _closed_form_parts(
        self, shape: Tensor, expr: Tensor, jaw: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(R_j - I [T, 3, 3], P [T, L, 3], Q - W J2 [T, L, 3], J0 [T, 1, 3])`` for expression [T, E], jaw [T, 3].

        One small product per part: slicing one big product costs a full-size zero fill per slice in backward.
        """
        n_t, n_exp = expr.shape
        n_s, e0 = shape.shape[-1], self.n_shape
        a = batch_rodrigues(jaw) - torch.eye(3, dtype=expr.dtype)
        feature = a.reshape(n_t, 9)
        p, q, joints = (
            (t + shape.reshape(1, -1) @ d[:n_s])
            + expr @ d[e0 : e0 + n_exp]
            + (0 if f is None else feature @ f)
            for t, d, f in self.parts
        )
        p, q, joints = p.reshape(n_t, -1, 3), q.reshape(n_t, -1, 3), joints.reshape(n_t, 2, 3)
        return a, p, q - self.jaw_mix * joints[:, 1:], joints[:, :1]

    def landmarks(self, shape: Tensor, expr: Tensor, jaw: Tensor, rot: Tensor, trans: Tensor) -> Tensor:
        """[T, L, 3] landmarks for shape [1, S] (shared) and per frame expression [..., E] and jaw, rotation,
        translation [..., 3] (T = the number of expression rows; T = 1 for a photo). Neck and eyes are at rest."""
        n_exp = expr.shape[-1]
        expr = expr.reshape(-1, n_exp)
        n_t = expr.shape[0]
        jaw, rot = jaw.reshape(n_t, 3), rot.reshape(n_t, 3)
        n_s, e0 = shape.shape[-1], self.n_shape
        if self.closed_form:
            a, p, m, root = self._closed_form_parts(shape, expr, jaw)
            local = p - root + m @ a.transpose(1, 2)
            return local @ batch_rodrigues(rot).transpose(1, 2) + root + trans.reshape(n_t, 1, 3)
        identity = self.template + shape.reshape(-1) @ self.dirs[:n_s]
        shaped = identity + expr @ self.dirs[e0 : e0 + n_exp]  # [T, V' * 3]
        zero = rot.new_zeros(n_t, 3)
        pose = torch.stack([rot, zero, jaw, zero, zero], 1)
        verts, _ = lbs(shaped.reshape(n_t, -1, 3), pose, self.posedirs, self.jreg, self.parents, self.weights)
        tri = verts[:, : self.n_keep][:, self.tri]  # [T, L, 3, 3]
        return (tri * self.bary[:, :, None]).sum(-2) + trans.reshape(n_t, 1, 3)

    def landmarks_jacobian(
        self, shape: Tensor, expr: Tensor, jaw: Tensor, rot: Tensor, trans: Tensor, with_shape: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Landmarks and their exact derivatives (FLAME's skeleton only, ``closed_form``), for Gauss-Newton.

        Args: as :meth:`landmarks` with expression [T, E] and jaw, rotation, translation [T, 3].

        Returns:
            ``(X [T, L, 3], dX/d(expression, jaw, rotation, translation) [T, L, 3, E + 9], dX/dshape [T, L, 3, S]
            or None)``.
        """
        x, pieces, d_shape = self.jacobian_pieces(shape, expr, jaw, rot, trans, with_shape)
        d_trans = torch.eye(3, dtype=x.dtype).expand(x.shape[0], x.shape[1], 3, 3)
        jac = torch.cat([piece.permute(0, 2, 3, 1) for piece in pieces] + [d_trans], -1)
        return x, jac, None if d_shape is None else d_shape.permute(0, 2, 3, 1)

    def jacobian_pieces(
        self, shape: Tensor, expr: Tensor, jaw: Tensor, rot: Tensor, trans: Tensor, with_shape: bool = False
    ) -> tuple[Tensor, list[Tensor], Tensor | None]:
        """:meth:`landmarks_jacobian` without the copy into one tensor: ``(X [T, L, 3], [dX/dexpression [T, E, L, 3],
        dX/djaw [T, 3, L, 3], dX/drotation [T, 3, L, 3]], dX/dshape [T, S, L, 3] or None)``; dX/dtranslation is
        the identity."""
        assert self.closed_form, "landmarks_jacobian needs FLAME's skeleton"
        n_t, n_exp = expr.shape
        n_s, e0 = shape.shape[-1], self.n_shape
        n_l = self.n_points
        eye = torch.eye(3, dtype=expr.dtype)
        a, p, m, root = self._closed_form_parts(shape, expr, jaw)
        r_g = batch_rodrigues(rot)
        local = p - root + m @ a.transpose(1, 2)
        x = local @ r_g.transpose(1, 2) + root + trans[:, None]

        def coefficient_columns(cols: slice) -> Tensor:  # dX/dc for blendshape columns -> [T, C, L, 3]
            (_, dp, _), (_, dq, _), (_, dj, _) = self.parts
            dp, dq, dj = (d[cols].reshape(d[cols].shape[0], -1, 3) for d in (dp, dq, dj))  # [C, L|2, 3]
            d_root, d_jaw = dj[:, :1], dj[:, 1:]
            d_local = dp - d_root + torch.einsum("tab,clb->tcla", a, dq - self.jaw_mix * d_jaw)
            return torch.einsum("tab,tclb->tcla", r_g, d_local) + d_root[None]

        d_expr = coefficient_columns(slice(e0, e0 + n_exp))
        d_rg = _rotation_derivatives(rot, r_g)  # [T, 3 (i), 3, 3]
        d_rot = torch.einsum("tiab,tlb->tila", d_rg, local)
        d_a = _rotation_derivatives(jaw, a + eye)  # dA/dw_i = dR_j/dw_i
        (_, _, fp), (_, _, fq), _ = self.parts
        d_p = (d_a.reshape(n_t, 3, 9) @ fp).reshape(n_t, 3, n_l, 3)
        d_q = (d_a.reshape(n_t, 3, 9) @ fq).reshape(n_t, 3, n_l, 3)
        d_local_jaw = d_p + torch.einsum("tiab,tlb->tila", d_a, m) + torch.einsum("tab,tilb->tila", a, d_q)
        d_jaw = torch.einsum("tab,tilb->tila", r_g, d_local_jaw)
        return x, [d_expr, d_jaw, d_rot], coefficient_columns(slice(0, n_s)) if with_shape else None


def _rotation_derivatives(omega: Tensor, rotation: Tensor) -> Tensor:
    """dR/d(omega_i) of axis-angle ``omega [T, 3]`` (``rotation`` = R(omega)) -> [T, 3, 3, 3], exact (Gallego and
    Yezzi's formula), the skew matrices [e_i]x at zero angle."""
    eye = torch.eye(3, dtype=omega.dtype)
    theta2 = omega.square().sum(-1)  # [T]

    def skew(v: Tensor) -> Tensor:  # [..., 3] -> [..., 3, 3]
        x, y, z = v.unbind(-1)
        zero = torch.zeros_like(x)
        return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*v.shape[:-1], 3, 3)

    small = theta2 < 1e-16
    safe2 = torch.where(small, torch.ones_like(theta2), theta2)
    w_skew = skew(omega)  # [T, 3, 3]
    i_minus_r = eye - rotation
    # omega x ((I - R) e_i) for each i: columns of (I - R)
    cross = torch.linalg.cross(
        omega[:, None, :].expand(-1, 3, -1), i_minus_r.transpose(1, 2), dim=-1
    )  # [T, 3, 3]
    general = (omega[:, :, None, None] * w_skew[:, None] + skew(cross)) / safe2[:, None, None, None]
    general = general @ rotation[:, None]
    at_zero = skew(eye)[None].expand(len(omega), -1, -1, -1)
    return torch.where(small[:, None, None, None], at_zero, general)


def _targets(image_or_landmarks: object) -> tuple[np.ndarray, tuple[int, int] | None]:
    """[468, 2] detector points and the image size (H, W) when known."""
    from talk.track.detect import FaceLandmarks, detect_landmarks

    if isinstance(image_or_landmarks, FaceLandmarks):
        return image_or_landmarks.points[:, :2].astype(np.float64), image_or_landmarks.image_size
    if isinstance(image_or_landmarks, np.ndarray | Tensor) and image_or_landmarks.ndim == 2:
        if tuple(image_or_landmarks.shape) not in ((468, 2), (468, 3)):
            raise FitError(
                f"fit_image: landmarks must be the 468 FaceMesh points [468, 2 or 3], got "
                f"{tuple(image_or_landmarks.shape)}."
            )
        return np.asarray(image_or_landmarks, dtype=np.float64)[:, :2], None
    if isinstance(image_or_landmarks, str | Path | np.ndarray | Tensor):
        face = detect_landmarks(image_or_landmarks)
        return face.points[:, :2].astype(np.float64), face.image_size
    raise FitError(
        f"fit_image: expected an image (path or RGB array) or 468 landmarks, got {type(image_or_landmarks).__name__}."
    )


def fit_image(
    image_or_landmarks: str | Path | np.ndarray | Tensor | object,
    face_model: FLAME,
    landmark_indices: np.ndarray | None = None,
    image_size: tuple[int, int] | None = None,
    focal: float | None = None,
    shape_weight: float = 1e-4,
    expression_weight: float = 1e-4,
    jaw_weight: float = 1e-3,
    rigid_iterations: int = 10,
    iterations: int = 30,
) -> FitResult:
    """Fit shape, expression, jaw, head pose and translation to the 468 FaceMesh landmarks of one face.

    Args:
        image_or_landmarks: An image (path or RGB uint8 [H, W, 3]; :func:`~talk.track.detect_landmarks` runs on
            it), a ``FaceLandmarks``, or an array [468, 2 or 3] of (x, y[, z]) pixels.
        face_model: A ``FLAME`` with a MediaPipe landmark embedding (``landmark_embedding_path``), e.g. the
            procedural head with ``mediapipe_embedding_path()`` or FLAME with its ``mediapipe_landmark_embedding.npz``.
        landmark_indices: [L] FaceMesh index of each of the model's landmarks (FLAME's file: its
            ``landmark_indices``); None = the model's landmarks are all 468 in order. Others are ignored.
        image_size: ``(H, W)``; needed only for an array of landmarks (default: 512 x 512).
        focal: Focal length in pixels; None = 1.2 times the image's long side.
        shape_weight: L2 prior weight on the shape coefficients.
        expression_weight: L2 prior weight on the expression coefficients.
        jaw_weight: L2 prior weight on the jaw axis-angle (radians).
        rigid_iterations: Levenberg-Marquardt iterations of the rigid stage.
        iterations: Levenberg-Marquardt iterations of the full stage (it stops earlier once converged).

    Returns:
        The :class:`FitResult`.
    """
    if getattr(face_model, "lmk_faces_idx", None) is None:
        raise FitError(
            "fit_image: the face model has no landmark embedding; pass landmark_embedding_path to FLAME."
        )
    targets_all, detected_size = _targets(image_or_landmarks)
    size = tuple(image_size or detected_size or (512, 512))
    n_lmk = int(face_model.lmk_faces_idx.shape[0])
    idx = np.arange(n_lmk) if landmark_indices is None else np.asarray(landmark_indices, np.int64).reshape(-1)
    if len(idx) != n_lmk or idx.min() < 0 or idx.max() >= 468:
        raise FitError(
            f"fit_image: landmark_indices must give one FaceMesh index (0-467) per model landmark ({n_lmk}), "
            f"got {len(idx)}."
        )
    if n_lmk < 6:
        raise FitError(f"fit_image: the embedding covers {n_lmk} FaceMesh points; at least 6 are needed.")
    eye_px = float(np.linalg.norm(targets_all[EYE_OUTER[0]] - targets_all[EYE_OUTER[1]]))
    if not eye_px > 1.0:
        raise FitError(
            f"fit_image: the outer eye corners are {eye_px:.1f} px apart; the landmarks are degenerate."
        )
    f = float(focal) if focal is not None else 1.2 * max(size)

    from talk.track.fit_video import fit_sequence  # the same solver, with one frame

    seq = fit_sequence(
        targets_all[None], None, face_model, size, landmark_indices=idx, focal=f, shape_weight=shape_weight,
        expression_weight=expression_weight, jaw_weight=jaw_weight, smooth_weight=0.0, robust_scale=0.0,
        keyframes=1, rigid_iterations=rigid_iterations, identity_iterations=iterations, iterations=iterations,
    )  # fmt: skip
    full = seq.params()
    params = FLAMEParams(
        shape=full.shape, expression=full.expression, jaw_pose=full.jaw_pose, global_pose=full.global_pose,
        translation=full.translation,
    )  # fmt: skip
    with torch.no_grad():
        vertices = face_model(params).vertices[0, 0]
    uv = seq.landmarks[0]
    err = np.linalg.norm(uv - targets_all[idx], axis=-1)
    return FitResult(
        params=params,
        camera=Camera(R=torch.eye(3)[None], T=torch.zeros(1, 3), focal=f, image_size=size),
        vertices=vertices,
        landmarks=uv,
        targets=targets_all[idx],
        landmark_indices=idx,
        residual_px=err,
        mean_residual_px=float(err.mean()),
        eye_distance_px=eye_px,
        normalized_residual=float(err.mean()) / eye_px,
    )
