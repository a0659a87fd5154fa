"""FLAME: linear blend skinning with shape, expression and pose-corrective blendshapes.

Conventions (as in FLAME 2020/2023): the file's ``shapedirs [V,3,400]`` holds 300 identity columns followed by 100
expression columns; the pose feature feeding ``posedirs [V,3,36]`` is ``R_j - I`` of the four non-root joints (neck,
jaw, left eye, right eye), each 3x3 flattened row-major; joints are regressed from the shaped rest mesh; the full
pose is ``[global, neck, jaw, eye_left, eye_right]`` axis-angle; translation is added after skinning.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from motion.face.base import FaceModel, FaceModelOutput
from motion.face.flame_io import load_flame_model, load_landmark_embedding

__all__ = ["FLAMEParams", "FLAME", "batch_rodrigues", "lbs"]

_N_SHAPE_FILE = 300  # FLAME convention: identity columns first, then expression columns


@dataclass(frozen=True)
class FLAMEParams:
    """FLAME parameters; every field is optional (None -> zeros). B and T are inferred from any given field.

    Attributes:
        shape: identity coefficients ``[B,n_shape]`` (constant over time) or ``[B,T,n_shape]``.
        expression: ``[B,T,n_expression]``.
        global_pose: root rotation, axis-angle ``[B,T,3]``.
        neck_pose: ``[B,T,3]``.
        jaw_pose: ``[B,T,3]``; ``[...,0]`` > 0 opens the mouth.
        eye_pose: ``[B,T,6]``, left eye then right eye axis-angle.
        translation: ``[B,T,3]`` metres, added after skinning.
    """

    shape: Tensor | None = None
    expression: Tensor | None = None
    global_pose: Tensor | None = None
    neck_pose: Tensor | None = None
    jaw_pose: Tensor | None = None
    eye_pose: Tensor | None = None
    translation: Tensor | None = None

    @classmethod
    def zeros(
        cls,
        batch: int,
        frames: int,
        n_shape: int = 100,
        n_expression: int = 50,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> FLAMEParams:
        """All-zero parameters for ``batch`` sequences of ``frames`` frames."""
        kw = {"device": device, "dtype": dtype or torch.float32}
        return cls(
            shape=torch.zeros(batch, n_shape, **kw),
            expression=torch.zeros(batch, frames, n_expression, **kw),
            global_pose=torch.zeros(batch, frames, 3, **kw),
            neck_pose=torch.zeros(batch, frames, 3, **kw),
            jaw_pose=torch.zeros(batch, frames, 3, **kw),
            eye_pose=torch.zeros(batch, frames, 6, **kw),
            translation=torch.zeros(batch, frames, 3, **kw),
        )

    def batch_frames(self) -> tuple[int, int]:
        """``(B, T)`` inferred from the given fields (T = 1 when only a per-sequence ``shape`` is given)."""
        b = t = None
        for f in fields(self):
            val = getattr(self, f.name)
            if val is None:
                continue
            if f.name == "shape" and val.dim() == 2:
                b = val.shape[0] if b is None else b
                continue
            if val.dim() != 3:
                raise ValueError(f"FLAMEParams.{f.name} must be [B,T,D], got shape {tuple(val.shape)}.")
            b = val.shape[0] if b is None else b
            t = val.shape[1] if t is None else t
            if (val.shape[0], val.shape[1]) != (b, t):
                raise ValueError(
                    f"FLAMEParams.{f.name} has [B,T]={tuple(val.shape[:2])}, inconsistent with ({b},{t}) of the "
                    "other fields."
                )
        if b is None:
            raise ValueError("FLAMEParams has no field set; give at least one (or use FLAMEParams.zeros).")
        return b, (t if t is not None else 1)


def batch_rodrigues(rot_vecs: Tensor, eps: float = 1e-8) -> Tensor:
    """Axis-angle ``[N,3]`` -> rotation matrices ``[N,3,3]`` (differentiable, safe at zero angle)."""
    angle = torch.sqrt((rot_vecs * rot_vecs).sum(-1, keepdim=True) + eps * eps)  # [N,1]
    axis = rot_vecs / angle
    cos = torch.cos(angle)[..., None]
    sin = torch.sin(angle)[..., None]
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device)[None]
    return eye + sin * k + (1.0 - cos) * torch.bmm(k, k)


def lbs(
    v_shaped: Tensor,
    pose: Tensor,
    posedirs: Tensor,
    j_regressor: Tensor,
    parents: list[int],
    weights: Tensor,
) -> tuple[Tensor, Tensor]:
    """Linear blend skinning with pose correctives (FLAME/SMPL convention).

    Args:
        v_shaped: rest vertices after shape/expression blendshapes ``[N,V,3]``.
        pose: axis-angle per joint ``[N,J,3]``.
        posedirs: ``[9*(J-1), V*3]`` pose-corrective basis.
        j_regressor: dense ``[J,V]`` joint regressor.
        parents: parent index per joint (-1 for the root).
        weights: skinning weights ``[V,J]``.

    Returns:
        ``(vertices [N,V,3], joints [N,J,3])`` posed.
    """
    n, v, _ = v_shaped.shape
    n_j = pose.shape[1]
    joints = torch.einsum("jv,nvc->njc", j_regressor, v_shaped)  # [N,J,3]
    rot = batch_rodrigues(pose.reshape(-1, 3)).view(n, n_j, 3, 3)
    eye = torch.eye(3, dtype=v_shaped.dtype, device=v_shaped.device)
    pose_feature = (rot[:, 1:] - eye).reshape(n, -1)  # [N,9*(J-1)]
    v_posed = v_shaped + (pose_feature @ posedirs).view(n, v, 3)

    # Chain rigid transforms down the kinematic tree. Joint j maps a rest point x to R_j x + c_j with
    # c_j = c_parent + R_parent (I - R_local) J_j; written this way every term is exactly zero at the identity
    # pose, so zero parameters reproduce the template bit for bit (no J - J rounding, no sum-of-weights != 1).
    world_rot: list[Tensor] = []
    offset: list[Tensor] = []
    for j in range(n_j):
        local_fix = ((eye - rot[:, j]) @ joints[:, j, :, None])[..., 0]  # [N,3]
        if parents[j] < 0:
            world_rot.append(rot[:, j])
            offset.append(local_fix)
        else:
            p = parents[j]
            world_rot.append(world_rot[p] @ rot[:, j])
            offset.append(offset[p] + (world_rot[p] @ local_fix[..., None])[..., 0])
    r_w = torch.stack(world_rot, 1)  # [N,J,3,3]
    c_w = torch.stack(offset, 1)  # [N,J,3]
    posed_joints = (r_w @ joints[..., None])[..., 0] + c_w
    # Blend (R_j - I) over joints per vertex (a [V,J] @ [J,9] product), then apply it with elementwise ops:
    # cheaper on CPU than per-vertex 3x3 matmuls, and exactly zero at the identity pose.
    per_joint = torch.cat([(r_w - eye).reshape(n, n_j, 9), c_w], -1)  # [N,J,12]
    blended = torch.matmul(weights, per_joint)  # [N,V,12]: per-vertex blended (R - I | offset)
    r_minus_i = blended[..., :9].reshape(n, v, 3, 3)
    verts = v_posed + (r_minus_i * v_posed[:, :, None, :]).sum(-1) + blended[..., 9:]
    return verts, posed_joints


class FLAME(FaceModel):
    """FLAME face model (linear blend skinning + shape, expression and pose-corrective blendshapes).

    Built from the FLAME file, or, as checkpoints store it, from a ``layout`` alone: the buffers are then allocated
    empty and filled by ``load_state_dict``, so a checkpoint rebuilds its face model without opening any file
    (:meth:`contained_init_args`).

    Args:
        model_path: FLAME 2020 ``generic_model.pkl`` / FLAME 2023 ``flame2023.pkl`` (download it yourself from
            flame.is.tue.mpg.de; licence), or a file of the same structure such as the procedural face.
        n_shape: identity coefficients used (at most 300, the file's identity columns).
        n_expression: expression coefficients used (at most the file's expression columns, 100 for FLAME).
        landmark_embedding_path: optional static landmark embedding (FLAME ``flame_static_embedding.pkl``,
            DECA ``landmark_embedding.npy`` or the procedural face's ``landmark_embedding.pkl``).
        layout: instead of the files: ``{"num_vertices", "num_faces", "parents", "num_landmarks"}`` (what
            :meth:`contained_init_args` writes); the weights must then come from a state dict.
    """

    file_arguments = ("model_path", "landmark_embedding_path")  # what contained_init_args() replaces
    motion_kind = "flame"  # token models work in expression coefficients + jaw axis-angle

    def __init__(
        self,
        model_path: str | None = None,
        n_shape: int = 100,
        n_expression: int = 50,
        landmark_embedding_path: str | None = None,
        layout: dict | None = None,
    ) -> None:
        super().__init__()
        self.n_shape = int(n_shape)
        self.n_expression = int(n_expression)
        if (model_path is None) == (layout is None):
            raise ValueError("FLAME: pass either model_path (the FLAME file) or layout (from a checkpoint).")
        if layout is not None:
            self._allocate(layout)
        else:
            self._load(str(model_path), landmark_embedding_path)
        # [V*3, n_shape] pseudo-inverse of the identity blendshapes, derived on first use by fit_shape
        self.register_buffer("_shape_pinv", None, persistent=False)

    def _load(self, model_path: str, landmark_embedding_path: str | None) -> None:
        model = load_flame_model(model_path)
        shapedirs = np.asarray(model["shapedirs"], dtype=np.float64)
        total = shapedirs.shape[2]
        n_id_file = min(_N_SHAPE_FILE, total)
        n_exp_file = total - n_id_file
        n_shape, n_expression = self.n_shape, self.n_expression
        if n_shape < 0 or n_shape > n_id_file:
            raise ValueError(
                f"n_shape={n_shape} but '{model_path}' holds {n_id_file} shape columns; use <= {n_id_file}."
            )
        if n_expression < 0 or n_expression > n_exp_file:
            raise ValueError(
                f"n_expression={n_expression} but '{model_path}' holds {n_exp_file} expression columns; "
                f"use <= {n_exp_file}."
            )
        dirs = np.concatenate(
            [shapedirs[:, :, :n_shape], shapedirs[:, :, n_id_file : n_id_file + n_expression]], 2
        )
        f32 = torch.float32
        v_template = np.asarray(model["v_template"], np.float64)
        n_v = v_template.shape[0]
        self.register_buffer("v_template", torch.as_tensor(v_template, dtype=f32))
        self.register_buffer("faces", self._as_long_faces(np.asarray(model["f"]).astype(np.int64)))
        # [V,3,S] -> [S, V*3] so that blendshape offsets are one matmul.
        self.register_buffer("shapedirs", torch.as_tensor(dirs.reshape(n_v * 3, -1).T.copy(), dtype=f32))
        posedirs = np.asarray(model["posedirs"], np.float64)
        self.register_buffer("posedirs", torch.as_tensor(posedirs.reshape(n_v * 3, -1).T.copy(), dtype=f32))
        self.register_buffer("J_regressor", torch.as_tensor(model["J_regressor"].toarray(), dtype=f32))
        self.register_buffer("lbs_weights", torch.as_tensor(np.asarray(model["weights"]), dtype=f32))
        kin = np.asarray(model["kintree_table"]).astype(np.int64)
        parents = kin[0].copy()
        parents[0] = -1  # the root's parent is stored as uint32 max
        self.parents = [int(p) for p in parents]
        self.n_joints = len(self.parents)
        if landmark_embedding_path is not None:
            fidx, bary = load_landmark_embedding(landmark_embedding_path)
            if fidx.size and (fidx.min() < 0 or fidx.max() >= self.faces.shape[0]):
                raise ValueError(
                    f"Landmark embedding '{landmark_embedding_path}' indexes triangles outside this model's "
                    f"{self.faces.shape[0]} faces; it belongs to another topology."
                )
            self.register_buffer("lmk_faces_idx", torch.as_tensor(fidx, dtype=torch.long))
            self.register_buffer("lmk_bary_coords", torch.as_tensor(bary, dtype=f32))
        else:
            self.lmk_faces_idx = None
            self.lmk_bary_coords = None

    def _allocate(self, layout: dict) -> None:
        """Empty buffers of the shapes ``layout`` gives, for ``load_state_dict`` to fill."""
        try:
            n_v, n_f = int(layout["num_vertices"]), int(layout["num_faces"])
            self.parents = [int(p) for p in layout["parents"]]
            n_l = int(layout.get("num_landmarks", 0))
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"FLAME layout {layout!r} must give num_vertices, num_faces, parents and num_landmarks."
            ) from None
        self.n_joints = n_j = len(self.parents)
        zeros = torch.zeros
        self.register_buffer("v_template", zeros(n_v, 3))
        self.register_buffer("faces", zeros(n_f, 3, dtype=torch.long))
        self.register_buffer("shapedirs", zeros(self.n_shape + self.n_expression, n_v * 3))
        self.register_buffer("posedirs", zeros(9 * (n_j - 1), n_v * 3))
        self.register_buffer("J_regressor", zeros(n_j, n_v))
        self.register_buffer("lbs_weights", zeros(n_v, n_j))
        if n_l:
            self.register_buffer("lmk_faces_idx", zeros(n_l, dtype=torch.long))
            self.register_buffer("lmk_bary_coords", zeros(n_l, 3))
        else:
            self.lmk_faces_idx = None
            self.lmk_bary_coords = None

    def contained_init_args(self) -> dict:
        """Init args that rebuild this model's structure without its files (its state dict holds the rest)."""
        n_l = 0 if self.lmk_faces_idx is None else int(self.lmk_faces_idx.shape[0])
        layout = {
            "num_vertices": self.num_vertices,
            "num_faces": self.num_faces,
            "parents": list(self.parents),
            "num_landmarks": n_l,
        }
        return {"model_path": None, "landmark_embedding_path": None, "layout": layout}

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    def _field(self, val: Tensor | None, b: int, t: int, d: int, name: str) -> Tensor:
        ref = self.v_template
        if val is None:
            return ref.new_zeros(b, t, d)
        if val.shape[-1] != d:
            raise ValueError(f"FLAMEParams.{name} has last dimension {val.shape[-1]}, expected {d}.")
        return val.to(ref.dtype)

    def forward(self, params: FLAMEParams) -> FaceModelOutput:
        """Pose the mesh.

        Args:
            params: FLAME parameters (missing fields are zeros).

        Returns:
            ``FaceModelOutput(vertices [B,T,V,3], landmarks [B,T,L,3] or None, joints [B,T,5,3])``.
        """
        b, t = params.batch_frames()
        dtype = self.v_template.dtype
        n = b * t
        n_v = self.num_vertices
        shape = params.shape
        if shape is not None:
            if shape.shape[-1] > self.n_shape:
                raise ValueError(
                    f"FLAMEParams.shape has {shape.shape[-1]} coefficients; this FLAME uses {self.n_shape}."
                )
            coeff = shape.to(dtype)
            dirs = self.shapedirs[: coeff.shape[-1]]
            if coeff.dim() == 2:  # identity constant over time: blend once per sequence, not per frame
                v_id = self.v_template + (coeff @ dirs).view(b, 1, n_v, 3)
            else:
                v_id = self.v_template + (coeff.reshape(n, -1) @ dirs).view(b, t, n_v, 3)
        else:
            v_id = self.v_template.expand(b, 1, n_v, 3)
        expr = params.expression
        if expr is not None:
            if expr.shape[-1] > self.n_expression:
                raise ValueError(
                    f"FLAMEParams.expression has {expr.shape[-1]} coefficients; this FLAME uses {self.n_expression}."
                )
            dirs = self.shapedirs[self.n_shape : self.n_shape + expr.shape[-1]]
            v_shaped = v_id + (expr.to(dtype).reshape(n, -1) @ dirs).view(b, t, n_v, 3)
        else:
            v_shaped = v_id.expand(b, t, n_v, 3)
        v_shaped = v_shaped.reshape(n, n_v, 3)
        pose = torch.cat(
            [
                self._field(params.global_pose, b, t, 3, "global_pose"),
                self._field(params.neck_pose, b, t, 3, "neck_pose"),
                self._field(params.jaw_pose, b, t, 3, "jaw_pose"),
                self._field(params.eye_pose, b, t, 6, "eye_pose"),
            ],
            -1,
        ).reshape(n, self.n_joints, 3)
        verts, joints = lbs(v_shaped, pose, self.posedirs, self.J_regressor, self.parents, self.lbs_weights)
        if params.translation is not None:
            trans = self._field(params.translation, b, t, 3, "translation").reshape(n, 1, 3)
            verts = verts + trans
            joints = joints + trans
        verts = verts.view(b, t, -1, 3)
        joints = joints.view(b, t, -1, 3)
        landmarks = None
        if self.lmk_faces_idx is not None:
            tri = verts[:, :, self.faces[self.lmk_faces_idx]]  # [B,T,L,3,3]
            landmarks = (tri * self.lmk_bary_coords[:, :, None]).sum(-2)
        return FaceModelOutput(vertices=verts, landmarks=landmarks, joints=joints)

    # --------------------------------------------------------------------------- expression + jaw motion
    @property
    def num_motion_params(self) -> int:
        """Width of one frame of FLAME motion: ``n_expression`` coefficients, then the jaw axis-angle (3)."""
        return self.n_expression + 3

    def fit_shape(self, template: Tensor) -> Tensor:
        """Identity coefficients ``[B, n_shape]`` whose neutral mesh is closest (least squares) to ``template``
        ``[B, V, 3]``; exact for a template that FLAME made."""
        delta = (template.to(self.v_template.dtype) - self.v_template).flatten(1)  # [B, V*3]
        if self._shape_pinv is None:
            self._shape_pinv = torch.linalg.pinv(self.shapedirs[: self.n_shape].double()).to(delta.dtype)
        return delta @ self._shape_pinv

    def motion_offsets(self, motion: Tensor, template: Tensor) -> Tensor:
        """Vertex offsets ``[B, T, V, 3]`` from ``template`` ``[B, V, 3]`` for FLAME motion ``[B, T,
        n_expression + 3]`` (expression coefficients, then jaw axis-angle).

        The identity is the template's least-squares fit (:meth:`fit_shape`), so jaw rotation swings that face's
        own jaw; ``template + offsets`` is exactly ``FLAME(shape, expression, jaw)`` for a template that FLAME
        made, and a zero motion gives zero offsets for any template.
        """
        b, t, d = motion.shape
        if d != self.num_motion_params:
            raise ValueError(
                f"FLAME motion has {d} values per frame; this FLAME takes {self.num_motion_params} "
                f"({self.n_expression} expression coefficients, then 3 of jaw axis-angle)."
            )
        shape = self.fit_shape(template)
        e = self.n_expression
        posed = self(FLAMEParams(shape=shape, expression=motion[..., :e], jaw_pose=motion[..., e:])).vertices
        rest = self(FLAMEParams(shape=shape, jaw_pose=motion.new_zeros(b, 1, 3))).vertices  # [B, 1, V, 3]
        return posed - rest
