"""Fit a FLAME-format face model to the landmarks of a whole video: one identity, smooth per-frame motion.

    from talk.track.fit_video import fit_sequence
    fit = fit_sequence(points, valid, model, image_size=(H, W))   # points [T, 468, 2] px, valid [T] bool
    fit.expression, fit.jaw, fit.rotation, fit.translation        # [T, E], [T, 3] x 3
    fit.shape                                                     # [S], shared by every frame

The camera is :func:`~talk.track.fit.fit_image`'s: a pinhole at the origin looking down -z, focal fixed (by
default 1.2 times the frame's long side), the head placed by the model's global rotation and translation. Three
stages, each batched Levenberg-Marquardt in float64 (:mod:`talk.track.solve`) on the landmark points alone, with
closed-form Jacobians (``_LandmarkRig``):

1. **Rigid**: rotation and translation of every frame on the stable points (eye corners, nose, mouth corners,
   chin, forehead), from a depth given by the eye-corner distance.
2. **Identity**: shape, with expression, jaw and pose of up to ``keyframes`` frames spread over the video, all
   fitted together with L2 priors: one face for the whole video, seen in many expressions.
3. **Motion**: shape fixed, expression, jaw, rotation and translation of every frame in chunks of ``chunk``
   frames, with the priors and a temporal smoothness term (squared frame-to-frame differences); each chunk is
   tied to the last frame of the one before, so chunk borders do not show.

Frames where no face was found (``valid`` false) have no data term: smoothness carries the motion across them
from their neighbours. Residuals are measured in units of the median outer-eye-corner distance (FaceMesh 33 and
263) so that the weights do not depend on the image size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from motion.face.flame import FLAME, FLAMEParams
from talk.track.embedding import surface_points
from talk.track.fit import EYE_OUTER, STABLE, FitError, _LandmarkRig
from talk.track.solve import levenberg_marquardt

__all__ = ["SequenceFit", "fit_sequence"]


@dataclass(frozen=True)
class SequenceFit:
    """A fitted video.

    Attributes:
        shape: [S] float32 identity shared by every frame.
        expression: [T, E] float32.
        jaw: [T, 3] float32 jaw axis-angle.
        rotation: [T, 3] float32 head (global) axis-angle, camera space.
        translation: [T, 3] float32 head translation, metres, camera space.
        focal: Focal length in pixels of the camera (R = I, T = 0).
        image_size: ``(H, W)``.
        landmarks: [T, L, 2] float32 projected model landmarks (x, y px) for ``landmark_indices``.
        landmark_indices: [L] FaceMesh index of each landmark row.
        valid: [T] bool, frames whose landmarks were fitted (a face was found).
        residual_px: [T] float32 mean landmark distance per frame, pixels (NaN where not ``valid``).
        eye_distance_px: [T] float32 distance of the target outer eye corners (NaN where not ``valid``).
    """

    shape: np.ndarray
    expression: np.ndarray
    jaw: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    focal: float
    image_size: tuple[int, int]
    landmarks: np.ndarray
    landmark_indices: np.ndarray
    valid: np.ndarray
    residual_px: np.ndarray
    eye_distance_px: np.ndarray

    @property
    def mean_residual_px(self) -> float:
        """Mean landmark residual over the valid frames, pixels."""
        return float(np.nanmean(self.residual_px)) if self.valid.any() else float("nan")

    @property
    def normalized_residual(self) -> float:
        """Mean over valid frames of the residual divided by that frame's outer-eye-corner distance."""
        if not self.valid.any():
            return float("nan")
        return float(np.nanmean(self.residual_px / self.eye_distance_px))

    def params(self) -> FLAMEParams:
        """The fit as ``FLAMEParams`` (B = 1): shape [1, S], expression [1, T, E], poses and translation [1, T, 3]."""
        return FLAMEParams(
            shape=torch.from_numpy(self.shape)[None],
            expression=torch.from_numpy(self.expression)[None],
            jaw_pose=torch.from_numpy(self.jaw)[None],
            global_pose=torch.from_numpy(self.rotation)[None],
            translation=torch.from_numpy(self.translation)[None],
        )


def _fill_invalid(targets: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Targets of frames without a face, linearly interpolated in time from the valid ones (for initialisation)."""
    if valid.all():
        return targets
    t = np.arange(len(targets))
    flat = targets.reshape(len(targets), -1)
    out = np.empty_like(flat)
    for k in range(flat.shape[1]):
        out[:, k] = np.interp(t, t[valid], flat[valid, k])
    return out.reshape(targets.shape)


def _columns(jac: tuple, cols: slice) -> tuple:
    """(r, J_x, J_s) with J_x restricted to the variables ``cols``."""
    r, j_x, j_s = jac
    return r, j_x[..., cols], j_s


def fit_sequence(
    landmarks: np.ndarray,
    valid: np.ndarray | None,
    face_model: FLAME,
    image_size: tuple[int, int],
    landmark_indices: np.ndarray | None = None,
    focal: float | None = None,
    shape_weight: float = 1e-5,
    expression_weight: float = 1e-5,
    jaw_weight: float = 1e-4,
    smooth_weight: float = 2e-4,
    robust_scale: float = 2.0,
    keyframes: int = 24,
    chunk: int = 256,
    rigid_iterations: int = 8,
    identity_iterations: int = 15,
    iterations: int = 6,
) -> SequenceFit:
    """Fit one identity and per-frame expression, jaw and head pose to a video's FaceMesh landmarks.

    Args:
        landmarks: [T, 468, 2] (or [T, 468, 3]) detector points, image pixels.
        valid: [T] bool, frames where a face was found; None = all.
        face_model: A ``FLAME`` with a MediaPipe landmark embedding (as for :func:`~talk.track.fit.fit_image`).
        image_size: ``(H, W)`` of the frames.
        landmark_indices: [L] FaceMesh index of each of the model's landmarks; None = all 468 in order.
        focal: Focal length in pixels; None = 1.2 times the frame's long side.
        shape_weight: L2 prior weight on the shape coefficients.
        expression_weight: L2 prior weight on the expression coefficients (per frame).
        jaw_weight: L2 prior weight on the jaw axis-angle (radians, per frame).
        smooth_weight: Weight of the squared frame-to-frame differences of expression, jaw, rotation and
            translation (translation in units of the template's eye-corner distance).
        robust_scale: Landmarks whose mean residual over the keyframes exceeds this many times the median
            landmark's weigh less in the motion stage (weight ``1 / (1 + (r / (robust_scale * median))^2)``);
            0 = all landmarks weigh the same.
        keyframes: Frames fitted together with the shared identity.
        chunk: Frames per motion chunk (memory and time per solve).
        rigid_iterations, identity_iterations, iterations: Levenberg-Marquardt iterations of the three stages.

    Returns:
        The :class:`SequenceFit`.

    Raises:
        FitError: no embedding, bad shapes, or no frame with a face.
    """
    if getattr(face_model, "lmk_faces_idx", None) is None:
        raise FitError(
            "fit_sequence: the face model has no landmark embedding; pass landmark_embedding_path to FLAME."
        )
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 3 or points.shape[1] != 468 or points.shape[2] not in (2, 3) or len(points) < 1:
        raise FitError(f"fit_sequence: landmarks must be [T, 468, 2 or 3], got {points.shape}.")
    n_t = len(points)
    ok = np.ones(n_t, bool) if valid is None else np.asarray(valid, bool).reshape(-1)
    if len(ok) != n_t:
        raise FitError(f"fit_sequence: valid has {len(ok)} entries for {n_t} frames.")
    if not ok.any():
        raise FitError("fit_sequence: no frame has landmarks (no face was found in any frame).")
    n_lmk = int(face_model.lmk_faces_idx.shape[0])
    idx = np.arange(n_lmk) if landmark_indices is None else np.asarray(landmark_indices, np.int64).reshape(-1)
    if len(idx) != n_lmk or idx.min() < 0 or idx.max() >= 468:
        raise FitError(
            f"fit_sequence: landmark_indices must give one FaceMesh index per model landmark ({n_lmk})."
        )
    stable = [i for i, k in enumerate(idx) if k in STABLE]
    if len(stable) < 4:
        stable = list(range(n_lmk))
    eyes = [int(np.nonzero(idx == k)[0][0]) for k in EYE_OUTER if k in idx]

    f64 = torch.float64
    eye_px_all = np.linalg.norm(points[:, EYE_OUTER[0], :2] - points[:, EYE_OUTER[1], :2], axis=1)
    ok = ok & (eye_px_all > 1.0)
    if not ok.any():
        raise FitError(
            "fit_sequence: the outer eye corners coincide in every frame; the landmarks are degenerate."
        )
    targets_np = _fill_invalid(points[:, idx, :2], ok)
    eye_px = np.interp(np.arange(n_t), np.nonzero(ok)[0], eye_px_all[ok])
    scale = float(np.median(eye_px_all[ok]))
    height, width = int(image_size[0]), int(image_size[1])
    f = float(focal) if focal is not None else 1.2 * max(height, width)
    cx, cy = width / 2.0, height / 2.0
    targets = torch.as_tensor(targets_np, dtype=f64)

    rig = _LandmarkRig(face_model)
    closed = rig.closed_form
    n_shape, n_exp = face_model.n_shape, face_model.n_expression
    faces, fidx = face_model.faces, face_model.lmk_faces_idx
    bary = face_model.lmk_bary_coords.to(f64)
    rest = surface_points(face_model.v_template.to(f64), faces, fidx, bary)
    eye_m = float((rest[eyes[0]] - rest[eyes[1]]).norm()) if len(eyes) == 2 else 0.09

    def project(p: Tensor) -> Tensor:
        depth = (-p[..., 2]).clamp(min=1e-6)
        return torch.stack([cx + f * p[..., 0] / depth, cy - f * p[..., 1] / depth], -1)

    def split(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """State [N, E + 9] -> expression, jaw, rotation, translation (metres)."""
        return x[:, :n_exp], x[:, n_exp : n_exp + 3], x[:, n_exp + 3 : n_exp + 6], x[:, n_exp + 6 :] * eye_m

    sqrt_w = torch.as_tensor(ok, dtype=f64).sqrt()[:, None]
    n_p = n_exp + 9  # per-frame variables: expression, jaw, rotation, translation

    def residuals(
        frames: Tensor, cols: list[int] | slice = slice(None), landmark_weight: Tensor | None = None
    ) -> tuple[Callable[..., Tensor], Callable[..., tuple]]:
        """Residuals of ``frames`` and their Jacobians: ``fn(x [N, E + 9], shape [S] or None, fixed_shape)`` ->
        [N, 2 L'] weighted residuals, x = (expression, jaw, rotation, translation / eye_m)."""
        tgt, w = targets[frames][:, cols], sqrt_w[frames]
        # a few points (the rigid stage): a rig of those points alone, not all of them computed and dropped
        part, cols = (rig.subset(cols), slice(None)) if isinstance(cols, list) and closed else (rig, cols)
        n_cols = tgt.shape[1]
        factor = (w / (scale * math.sqrt(n_cols)))[..., None]  # [N, 1, 1]
        if landmark_weight is not None:
            factor = factor * landmark_weight.sqrt()[None, :, None]  # [N, L, 1]

        def fn(x: Tensor, shape_: Tensor | None, fixed_shape: Tensor | None = None) -> Tensor:
            shp = shape_ if shape_ is not None else fixed_shape
            uv = project(part.landmarks(shp, *split(x))[:, cols])
            return ((uv - tgt) * factor).flatten(1)

        def jac(x: Tensor, shape_: Tensor | None, fixed_shape: Tensor | None = None) -> tuple:
            shp = shape_ if shape_ is not None else fixed_shape
            pts, pieces, d_s = part.jacobian_pieces(shp, *split(x), with_shape=shape_ is not None)
            depth = (-pts[..., 2]).clamp(min=1e-6)
            # d(u, v)/dX: u = cx + f X / d, v = cy - f Y / d, d = -Z
            zero = torch.zeros_like(depth)
            du = torch.stack([f / depth, zero, f * pts[..., 0] / depth**2], -1)  # [N, L, 3]
            dv = torch.stack([zero, -f / depth, -f * pts[..., 1] / depth**2], -1)
            proj = torch.stack([du, dv], -2) * factor[..., None]  # [N, L, 2, 3]
            r = ((project(pts) - tgt) * factor).flatten(1)
            # each piece projected straight into its columns (no [N, L, 3, P] copy)
            j_x = torch.empty(*proj.shape[:3], n_p, dtype=f64)
            col = 0
            for piece in pieces:
                j_x[..., col : col + piece.shape[1]] = torch.einsum("tlkc,tplc->tlkp", proj, piece)
                col += piece.shape[1]
            j_x[..., col:] = proj * eye_m  # translation, in units of eye_m
            j_s = None if d_s is None else torch.einsum("tlkc,tplc->tlkp", proj, d_s).flatten(1, 2)
            return r, j_x.flatten(1, 2), j_s

        return fn, jac

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small dense problems: thread start-up costs more than it saves
    prior = torch.cat(
        [torch.full((n_exp,), expression_weight), torch.full((3,), jaw_weight), torch.zeros(6)]
    ).to(f64)
    smooth = torch.full((n_p,), smooth_weight, dtype=f64)
    try:
        # ---- 1. rigid pose of every frame, from the eye distance and the centroid of the stable points
        depth = f * eye_m / eye_px
        centre = targets_np[:, stable].mean(1)
        rest_c = rest[stable].mean(0).numpy()
        trans0 = np.stack(
            [
                (centre[:, 0] - cx) * depth / f - rest_c[0],
                -(centre[:, 1] - cy) * depth / f - rest_c[1],
                -depth - rest_c[2],
            ],
            1,
        )
        state = torch.zeros(n_t, n_p, dtype=f64)
        state[:, n_exp + 6 :] = torch.as_tensor(trans0 / eye_m)
        no_shape = torch.zeros(1, n_shape, dtype=f64)
        for start in range(0, n_t, chunk):
            rows = torch.arange(start, min(start + chunk, n_t))
            fn, jac = residuals(rows, stable)
            pad = torch.zeros(len(rows), n_exp + 3, dtype=f64)
            rigid = levenberg_marquardt(
                lambda x6, _s, fn=fn, pad=pad: fn(torch.cat([pad, x6], 1), None, no_shape),
                state[rows, n_exp + 3 :],
                torch.zeros(6, dtype=f64),
                iterations=rigid_iterations,
                jacobian=None
                if not closed
                else lambda x6, _s, jac=jac, pad=pad: _columns(
                    jac(torch.cat([pad, x6], 1), None, no_shape), slice(n_exp + 3, None)
                ),
            )[0]
            state[rows, n_exp + 3 :] = rigid

        # ---- 2. identity from keyframes spread over the valid frames
        valid_frames = np.nonzero(ok)[0]
        picks = np.linspace(0, len(valid_frames) - 1, min(keyframes, len(valid_frames))).round().astype(int)
        keys = torch.as_tensor(valid_frames[np.unique(picks)])
        fn, jac = residuals(keys)
        key_state, shape_s = levenberg_marquardt(
            lambda x, s_: fn(x, s_[None]),
            state[keys],
            prior,
            shared=torch.zeros(n_shape, dtype=f64),
            prior_shared=torch.full((n_shape,), shape_weight, dtype=f64),
            iterations=identity_iterations,
            jacobian=None if not closed else lambda x, s_: jac(x, s_[None]),
        )
        shape = shape_s[None]
        # Robust landmark weights: a point the model cannot follow in the keyframes (where the detector's
        # notion of it and the embedding disagree, e.g. silhouette points) counts less, Cauchy-style.
        with torch.no_grad():
            per_point = (
                (project(rig.landmarks(shape, *split(key_state))) - targets[keys]).norm(dim=-1).mean(0)
            )
            typical = per_point.median().clamp(min=1e-3 * scale)
            landmark_weight = 1.0 / (1.0 + (per_point / (robust_scale * typical)).square())
        state[keys] = key_state

        # ---- 3. every frame's motion, chunk by chunk, smooth and tied to the previous chunk's last frame
        for start in range(0, n_t, chunk):
            rows = torch.arange(start, min(start + chunk, n_t))
            fn, jac = residuals(rows, landmark_weight=landmark_weight if robust_scale > 0 else None)
            state[rows] = levenberg_marquardt(
                lambda x, _s, fn=fn: fn(x, None, shape),
                state[rows],
                prior,
                smooth=smooth,
                anchor=None if start == 0 else state[start - 1],
                iterations=iterations,
                jacobian=None if not closed else lambda x, _s, jac=jac: jac(x, None, shape),
            )[0]
        expression, jaw, rotation, translation = split(state)
        with torch.no_grad():
            uv = torch.cat(
                [project(rig.landmarks(shape, *split(state[s : s + chunk]))) for s in range(0, n_t, chunk)]
            )
    finally:
        torch.set_num_threads(threads)
    err = (uv - torch.as_tensor(points[:, idx, :2])).norm(dim=-1).mean(-1).numpy()
    nan = np.float32("nan")
    return SequenceFit(
        shape=shape[0].float().numpy(),
        expression=expression.float().numpy(),
        jaw=jaw.float().numpy(),
        rotation=rotation.float().numpy(),
        translation=translation.float().numpy(),
        focal=f,
        image_size=(height, width),
        landmarks=uv.float().numpy(),
        landmark_indices=idx,
        valid=ok,
        residual_px=np.where(ok, err, nan).astype(np.float32),
        eye_distance_px=np.where(ok, eye_px_all, nan).astype(np.float32),
    )
