"""The Basel Face Model as Deep3DFaceRecon, SadTalker and PIRenderer use it: a linear 3DMM with 257 coefficients.

Conventions (Deep3DFaceRecon's ``models/bfm.py``):

* Coefficients: ``[id 80 | exp 64 | tex 80 | angle 3 | gamma 27 | trans 3]`` (:data:`BFM_COEFF_SIZES`).
* Shape: ``meanshape + idBase @ id + exBase @ exp`` in decimetres (the file's unit; :attr:`BFM.unit` converts to
  metres), the mean shape re-centred on its vertex mean. The face looks towards +z, y up.
* Pose: Euler angles ``(x, y, z)`` in radians, ``R = Rz @ Ry @ Rx`` applied to row-vector points as ``v @ R^T``;
  then ``+ trans``. Positive yaw (y) turns the nose towards +x, i.e. to the right of the image.
* Camera: at ``(0, 0, camera_distance)`` (10 dm) looking down -z; depth ``z' = camera_distance - z``;
  ``u = center + focal * x / z'``, ``v = center - focal * y / z'`` with pixel centres at ``j + 0.5`` and v down.
  (Deep3DFaceRecon's landmarks use v up: ``v_up = 2 * center - v``.)
* Lighting: 9 spherical-harmonics coefficients per colour with 0.8 added to the DC term, evaluated on unit
  normals after the rotation, multiplying the albedo ``(meantex + texBase @ tex) / 255``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F_
from torch import Tensor

from motion.face.base import FaceModel, FaceModelOutput
from motion.face.bfm_io import BFMArrays, load_bfm_mat

__all__ = ["BFM", "BFM_COEFF_SIZES", "BFM_NUM_COEFFS", "BFMCoeffs", "split_coeffs"]

BFM_COEFF_SIZES: dict[str, int] = {"id": 80, "exp": 64, "tex": 80, "angle": 3, "gamma": 27, "trans": 3}
BFM_NUM_COEFFS = sum(BFM_COEFF_SIZES.values())  # 257

# Spherical harmonics (Ramamoorthi & Hanrahan): per band l, a_l of the Lambertian kernel times c_l of the basis.
_SH_A = (math.pi, 2 * math.pi / math.sqrt(3), 2 * math.pi / math.sqrt(8))
_SH_C = (1 / math.sqrt(4 * math.pi), math.sqrt(3 / (4 * math.pi)), 3 * math.sqrt(5) / math.sqrt(12 * math.pi))
_SH_K = tuple(a * c for a, c in zip(_SH_A, _SH_C, strict=True))
_INIT_DC = 0.8  # Deep3DFaceRecon's default ambient light, added to each colour's first coefficient
CAMERA_DISTANCE = 10.0  # decimetres from the model origin to the camera


@dataclass(frozen=True)
class BFMCoeffs:
    """The 257 Deep3DFaceRecon coefficients by part; each field has the same leading dims ``[...]``.

    Attributes:
        id: ``[..., 80]`` identity.
        exp: ``[..., 64]`` expression.
        tex: ``[..., 80]`` albedo.
        angle: ``[..., 3]`` Euler angles (x pitch, y yaw, z roll), radians.
        gamma: ``[..., 27]`` SH lighting, 3 colours x 9 coefficients.
        trans: ``[..., 3]`` translation, decimetres.
    """

    id: Tensor
    exp: Tensor
    tex: Tensor
    angle: Tensor
    gamma: Tensor
    trans: Tensor

    def join(self) -> Tensor:
        """The coefficients as one ``[..., 257]`` tensor (inverse of :func:`split_coeffs`)."""
        return torch.cat([getattr(self, f.name) for f in fields(self)], dim=-1)


def split_coeffs(coeff: Tensor) -> BFMCoeffs:
    """Split ``[..., 257]`` coefficients into :class:`BFMCoeffs` (views, so gradients flow to ``coeff``)."""
    if coeff.shape[-1] != BFM_NUM_COEFFS:
        raise ValueError(
            f"BFM coefficients must have {BFM_NUM_COEFFS} values in the last dimension (id 80, exp 64, tex 80, "
            f"angle 3, gamma 27, trans 3), got shape {tuple(coeff.shape)}."
        )
    return BFMCoeffs(*torch.split(coeff, list(BFM_COEFF_SIZES.values()), dim=-1))


def _check_width(value: Tensor, width: int, name: str) -> None:
    if value.shape[-1] != width:
        raise ValueError(f"BFM: `{name}` has last dimension {value.shape[-1]}, expected {width}.")


class BFM(FaceModel):
    """Deep3DFaceRecon's BFM 2009 face model (35709 vertices in the real file) behind the face-model interface.

    Built from ``BFM_model_front.mat``, or, as checkpoints store it, from a ``layout`` alone: the buffers are then
    allocated empty and filled by ``load_state_dict`` (:meth:`contained_init_args`), so no file is opened. The
    buffers are the :class:`~motion.face.bfm_io.BFMArrays` fields (``meanshape [V,3]`` re-centred, ``id_base``,
    ``exp_base``, ``mean_tex``, ``tex_base``, ``faces``, ``point_buf``, ``keypoints``), float32 / int64.

    Args:
        model_path: Deep3DFaceRecon's ``BFM_model_front.mat`` (made by its ``util/load_mats.py`` from the licensed
            ``01_MorphableModel.mat``; download that yourself), or a file of the same layout.
        layout: instead of the file: ``{"num_vertices", "num_faces", "n_id", "n_exp", "n_tex",
            "num_landmarks"}`` (what :meth:`contained_init_args` writes); the buffers must then come from a state
            dict.
        recenter: subtract the mean of the mean shape's vertices, as Deep3DFaceRecon does (file only; a state dict
            already holds the re-centred shape).
    """

    file_arguments = ("model_path",)  # what contained_init_args() replaces
    motion_kind = "bfm"  # token models work in the expression coefficients
    unit = 0.1  # metres per file unit (the file is in decimetres)

    def __init__(
        self, model_path: str | None = None, layout: dict | None = None, recenter: bool = True
    ) -> None:
        super().__init__()
        if (model_path is None) == (layout is None):
            raise ValueError("BFM: pass either model_path (BFM_model_front.mat) or layout (a checkpoint's).")
        self.recenter = bool(recenter)
        if layout is not None:  # sizes only (from a checkpoint): zero buffers for load_state_dict to fill
            keys = ("num_vertices", "num_faces", "n_id", "n_exp", "n_tex", "num_landmarks")
            try:
                arrays = BFMArrays.zeros(*(int(layout[k]) for k in keys))
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"BFM layout {layout!r} must give {', '.join(keys)}.") from None
        else:
            arrays = load_bfm_mat(str(model_path))
        if layout is None and self.recenter:
            mean = arrays.meanshape.astype(np.float64)
            arrays = replace(arrays, meanshape=mean - mean.mean(axis=0, keepdims=True))
        # buffers named as the BFMArrays fields: float32 arrays and int64 indices
        for name in (f.name for f in fields(arrays)):
            value = getattr(arrays, name)
            dtype = torch.long if value.dtype.kind in "iu" else torch.float32
            self.register_buffer(name, torch.as_tensor(value, dtype=dtype))

    def contained_init_args(self) -> dict:
        """Init args that rebuild this model's structure without its file (its state dict holds the rest)."""
        layout = {
            "num_vertices": self.num_vertices,
            "num_faces": self.num_faces,
            "n_id": self.n_id,
            "n_exp": self.n_exp,
            "n_tex": self.n_tex,
            "num_landmarks": int(self.keypoints.shape[0]),
        }
        return {"model_path": None, "layout": layout}

    @property
    def num_vertices(self) -> int:
        return int(self.meanshape.shape[0])

    @property
    def n_id(self) -> int:
        """Identity coefficients Ni (80 in the real file)."""
        return int(self.id_base.shape[1])

    @property
    def n_exp(self) -> int:
        """Expression coefficients Ne (64 in the real file)."""
        return int(self.exp_base.shape[1])

    @property
    def n_tex(self) -> int:
        """Albedo coefficients Nt (80 in the real file)."""
        return int(self.tex_base.shape[1])

    @property
    def num_motion_params(self) -> int:
        """Width of one frame of BFM motion: the expression coefficients."""
        return self.n_exp

    # ------------------------------------------------------------------------------------------ geometry
    def _blend(self, coeff: Tensor, basis: Tensor) -> Tensor:
        """``basis @ coeff`` as per-vertex offsets ``[..., V, 3]`` (rows of ``basis`` are x, y, z per vertex)."""
        return torch.matmul(coeff.to(basis.dtype), basis.t()).unflatten(-1, (self.num_vertices, 3))

    def shape(self, id: Tensor | None = None, exp: Tensor | None = None) -> Tensor:
        """Mesh in file units (decimetres): ``meanshape + idBase @ id + exBase @ exp``.

        Args:
            id: ``[..., Ni]`` or None (zeros). With one leading dim fewer than ``exp`` (``[B, Ni]`` against
                ``[B, T, Ne]``) it is held over time.
            exp: ``[..., Ne]`` or None (zeros).

        Returns:
            ``[..., V, 3]`` vertices (the mean shape ``[V, 3]`` when both are None).
        """
        verts = self.meanshape
        if exp is not None:
            _check_width(exp, self.n_exp, "exp")
            verts = verts + self._blend(exp, self.exp_base)
        if id is not None:
            _check_width(id, self.n_id, "id")
            id_offsets = self._blend(id, self.id_base)
            if exp is not None and id.dim() == exp.dim() - 1:
                id_offsets = id_offsets.unsqueeze(-3)  # [B, 1, V, 3] against [B, T, V, 3]
            verts = verts + id_offsets
        return verts

    def forward(self, id: Tensor | None = None, exp: Tensor | None = None) -> FaceModelOutput:
        """Unposed meshes of identity ``id`` and per-frame expression ``exp``.

        Args:
            id: identity ``[B, Ni]`` (held over time), ``[B, T, Ni]``, ``[Ni]`` (B = 1) or None (the mean
                identity).
            exp: expression ``[B, T, Ne]`` or ``[T, Ne]`` (B = 1), or None (neutral, T = 1).

        Returns:
            ``FaceModelOutput(vertices [B, T, V, 3] metres, landmarks [B, T, L, 3] the keypoint vertices)``.
        """
        exp = exp.unsqueeze(0) if exp is not None and exp.dim() == 2 else exp
        id = id.unsqueeze(0) if id is not None and id.dim() == 1 else id
        if exp is None and id is not None and id.dim() == 2:
            id = id.unsqueeze(1)  # [B, 1, Ni]: one neutral frame
        verts = self.shape(id, exp) * self.unit
        while verts.dim() < 4:
            verts = verts.unsqueeze(0)
        return FaceModelOutput(vertices=verts, landmarks=verts[..., self.keypoints, :])

    def neutral(self, id: Tensor | None = None) -> Tensor:
        """Expressionless mesh ``[..., V, 3]`` in metres of identity ``[..., Ni]`` (None: the mean face)."""
        return self.shape(id, None) * self.unit

    def motion_offsets(self, motion: Tensor, template: Tensor) -> Tensor:
        """Vertex offsets ``[B, T, V, 3]`` in metres of expression coefficients ``motion`` ``[B, T, Ne]``.

        The expression basis is linear, so the offsets do not depend on ``template`` ``[B, V, 3]`` (it is accepted
        for the face-model interface) and a zero motion gives zero offsets.
        """
        if motion.dim() != 3 or motion.shape[-1] != self.n_exp:
            raise ValueError(
                f"BFM motion must be [B, T, {self.n_exp}] expression coefficients, got shape {tuple(motion.shape)}."
            )
        return self._blend(motion, self.exp_base) * self.unit

    def motion_weights(self) -> Tensor:
        """``[Ne]`` how far one unit of each expression coefficient moves the mesh: the RMS vertex displacement in
        metres (BFM's coefficients all have unit variance, however little a component moves the face)."""
        return self.exp_base.double().norm(dim=0).div(self.num_vertices**0.5).mul(self.unit).float()

    def texture(self, tex: Tensor) -> Tensor:
        """Albedo ``[..., V, 3]`` in [0, 1] (roughly): ``(meantex + texBase @ tex) / 255`` for ``tex`` ``[..., Nt]``."""
        _check_width(tex, self.n_tex, "tex")
        return (self.mean_tex + self._blend(tex, self.tex_base)) / 255.0

    def vertex_normals(self, vertices: Tensor) -> Tensor:
        """Unit vertex normals ``[..., V, 3]`` of ``vertices`` ``[..., V, 3]``, Deep3DFaceRecon's way.

        Each face's unit normal (right-hand rule on ``faces`` order) is summed over the vertex's ``point_buf``
        faces (the padding index F reads an appended zero normal), then normalised: faces count equally, not by
        area.
        """
        v0, v1, v2 = (vertices[..., self.faces[:, k], :] for k in range(3))
        face_n = F_.normalize(torch.linalg.cross(v0 - v1, v1 - v2, dim=-1), dim=-1, eps=1e-12)
        face_n = torch.cat([face_n, torch.zeros_like(face_n[..., :1, :])], dim=-2)
        return F_.normalize(face_n[..., self.point_buf, :].sum(dim=-2), dim=-1, eps=1e-12)

    @staticmethod
    def rotation(angle: Tensor) -> Tensor:
        """Rotation matrices ``[..., 3, 3]`` ``R = Rz @ Ry @ Rx`` of Euler angles ``[..., 3]`` (x, y, z; radians).

        Points (row vectors) rotate as ``v @ R^T``. Deep3DFaceRecon's ``compute_rotation`` returns ``R^T``.
        """
        cos, sin = torch.cos(angle), torch.sin(angle)
        one, zero = torch.ones_like(angle[..., 0]), torch.zeros_like(angle[..., 0])
        (cx, cy, cz), (sx, sy, sz) = cos.unbind(-1), sin.unbind(-1)

        def mat(*rows: Tensor) -> Tensor:
            return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))

        rot_x = mat(one, zero, zero, zero, cx, -sx, zero, sx, cx)
        rot_y = mat(cy, zero, sy, zero, one, zero, -sy, zero, cy)
        rot_z = mat(cz, -sz, zero, sz, cz, zero, zero, zero, one)
        return rot_z @ rot_y @ rot_x

    def pose(self, vertices: Tensor, angle: Tensor, trans: Tensor) -> Tensor:
        """Rotate then translate ``vertices`` ``[..., V, 3]`` (file units) by ``angle``/``trans`` ``[..., 3]``."""
        return vertices @ self.rotation(angle).transpose(-1, -2) + trans.unsqueeze(-2)

    def to_camera(
        self, vertices: Tensor, angle: Tensor, trans: Tensor, camera_distance: float = CAMERA_DISTANCE
    ) -> Tensor:
        """Deep3DFaceRecon's camera coordinates ``(x, y, camera_distance - z)`` ``[..., V, 3]`` of ``vertices``
        ``[..., V, 3]`` posed by Euler ``angle`` and ``trans`` ``[..., 3]`` (all lengths in file units)."""
        posed = self.pose(vertices, angle, trans)
        return torch.cat([posed[..., :2], camera_distance - posed[..., 2:]], dim=-1)

    # ------------------------------------------------------------------------------------------ appearance
    @staticmethod
    def illuminate(albedo: Tensor, normals: Tensor, gamma: Tensor) -> Tensor:
        """Lit colours ``[..., V, 3]``: per channel, the 9 SH basis values of the normal dotted with its gamma.

        Args:
            albedo: ``[..., V, 3]`` RGB in [0, 1].
            normals: ``[..., V, 3]`` unit normals in camera orientation (after the rotation).
            gamma: ``[..., 27]`` = 3 colours x 9 coefficients; 0.8 is added to each colour's DC coefficient.
        """
        _check_width(gamma, 27, "gamma")
        g = gamma.unflatten(-1, (3, 9)).to(normals.dtype)
        g = torch.cat([g[..., :1] + _INIT_DC, g[..., 1:]], dim=-1)
        k0, k1, k2 = _SH_K
        nx, ny, nz = normals.unbind(-1)
        basis = torch.stack(
            [
                torch.full_like(nx, k0),
                -k1 * ny,
                k1 * nz,
                -k1 * nx,
                k2 * nx * ny,
                -k2 * ny * nz,
                0.5 * k2 / math.sqrt(3.0) * (3.0 * nz * nz - 1.0),
                -k2 * nx * nz,
                0.5 * k2 * (nx * nx - ny * ny),
            ],
            dim=-1,
        )  # [..., V, 9]
        return torch.matmul(basis, g.transpose(-1, -2)) * albedo  # [..., V, 9] @ [..., 9, 3]

    # ------------------------------------------------------------------------------------------ image
    @staticmethod
    def project(
        points: Tensor, focal: float, center: float, camera_distance: float = CAMERA_DISTANCE
    ) -> Tensor:
        """Pixel coordinates and depth ``[..., V, 3]`` = ``(u, v, depth)`` of posed points ``[..., V, 3]``.

        ``u = center + focal * x / depth``, ``v = center - focal * y / depth`` (v down, pixel centres at
        ``j + 0.5``), ``depth = camera_distance - z`` in file units (:func:`talk.bfm_render.bfm_camera` is the same
        camera as a :class:`render.camera.Camera`).
        """
        depth = camera_distance - points[..., 2]
        u = center + focal * points[..., 0] / depth
        v = center - focal * points[..., 1] / depth
        return torch.stack([u, v, depth], dim=-1)

    def _coeffs(self, coeff: Tensor | BFMCoeffs) -> BFMCoeffs:
        c = coeff if isinstance(coeff, BFMCoeffs) else split_coeffs(coeff)
        if c.id.dim() != 2:
            raise ValueError(
                f"BFM: coefficients must be [B, {BFM_NUM_COEFFS}], got batch shape {tuple(c.id.shape[:-1])}."
            )
        return c

    def landmarks_2d(
        self,
        coeff: Tensor | BFMCoeffs,
        focal: float = 1015.0,
        center: float = 112.0,
        camera_distance: float = CAMERA_DISTANCE,
    ) -> Tensor:
        """Projected keypoints ``[B, L, 2]`` (pixels, v down) of coefficients ``[B, 257]``."""
        c = self._coeffs(coeff)
        posed = self.pose(self.shape(c.id, c.exp)[:, self.keypoints], c.angle, c.trans)
        return self.project(posed, focal, center, camera_distance)[..., :2]

    def lit_mesh(
        self,
        coeff: Tensor | BFMCoeffs,
        focal: float = 1015.0,
        center: float = 112.0,
        camera_distance: float = CAMERA_DISTANCE,
    ) -> tuple[Tensor, Tensor]:
        """Deep3DFaceRecon's forward up to rasterization: shape, pose, projection and SH-lit albedo.

        :func:`talk.bfm_render.render_bfm` rasterizes the result with perspective-correct colours.

        Args:
            coeff: ``[B, 257]`` coefficients or :class:`BFMCoeffs` of ``[B, ...]`` parts.
            focal: focal length in pixels (Deep3DFaceRecon: 1015 at 224).
            center: principal point in pixels, both axes.
            camera_distance: camera position on the +z axis, file units.

        Returns:
            ``(uvz [B, V, 3]`` pixel coordinates and depth (:meth:`project`), ``colors [B, V, 3]`` lit colours,
            about [0, 1]``)``, differentiable in every coefficient.
        """
        c = self._coeffs(coeff)
        verts = self.shape(c.id, c.exp)  # [B, V, 3]
        rot_t = self.rotation(c.angle).transpose(-1, -2)
        posed = verts @ rot_t + c.trans.unsqueeze(-2)
        normals = self.vertex_normals(verts) @ rot_t  # camera orientation, as Deep3DFaceRecon lights them
        colors = self.illuminate(self.texture(c.tex), normals, c.gamma)
        return self.project(posed, focal, center, camera_distance), colors
