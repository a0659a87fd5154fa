"""Render-only mouth interior for the procedural head: upper and lower teeth and a tongue, rigidly attached.

    mouth = build_mouth_interior(neutral, face.model, face.masks, seed=3)   # neutral [V,3]: the identity at rest
    mesh = mouth.attach(animated, faces, albedo)    # animated [T,V,3] -> MouthMesh: [T,V+M,3], [F+Fm,3], [V+M,3]

The procedural head already has a dark mouth cavity (a pouch hung from the lips, roof on the skull, floor on
the jaw, with a back wall), so an open mouth shows dark red, not the back of the head. What it lacks for image
synthesis is what a real open mouth shows in front of that darkness: teeth and a tongue. They are added here as
extra vertices and faces appended to the head mesh *for rendering only*: the face model file, the motion
datasets and their metrics never see them.

Attachment. The upper teeth move with the skull, the lower teeth and the tongue with the jaw. Rather than
re-deriving FLAME's kinematic chain from pose parameters, the two rigid transforms are recovered per frame from
vertices of the head that the model moves rigidly with one joint: skinning weight ~1 on the neck joint (which
carries the head in FLAME) or on the jaw joint, and no expression or pose-corrective displacement (the deep rows
of the procedural cavity: its roof and its floor). A least-squares rigid fit (Kabsch) of their rest positions to
their animated positions is then exactly the joint's world transform, including the head pose and translation.
So any animated mesh of the same topology gets its teeth (FLAME parameters, vertex offsets from a regressor, a
tracked sequence), with no parameters needed.

Geometry. Each tooth is a rounded box (a superellipsoid), placed along a parabolic dental arch fitted to the
neutral's mouth line (its height), width (the lip corners) and lip front (the arch starts a few millimetres
behind the slit). Upper incisal edges sit ~2 mm below the mouth line with the lower ones behind them (overjet);
crowns extend upward / downward into the lips, where the lip surface and the cavity hide them while the mouth is
closed. The tongue is a flattened ellipsoid, narrower at its tip, lying on the cavity floor behind the lower
teeth. Colours darken with depth behind the lips (a cheap ambient occlusion), since the rasterizer casts no
shadows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["MouthInterior", "MouthMesh", "build_mouth_interior", "rigid_fit"]

UPPER, LOWER, TONGUE = 0, 1, 2
_NECK, _JAW = 1, 2  # FLAME joints: root, neck (carries the head), jaw, left eye, right eye
_N_SHAPE_FILE = 300  # FLAME files: identity columns first, then expression columns

# Tooth widths along the arch (metres, centre outwards: central incisor, lateral incisor, canine, premolars) for
# a mouth 49 mm wide (the procedural head's), scaled with the identity's mouth width.
_UPPER_WIDTHS = (0.0085, 0.0066, 0.0075, 0.0068, 0.0066)
_LOWER_WIDTHS = (0.0053, 0.0058, 0.0068, 0.0068, 0.0068)
_UPPER_EDGE = (0.0036, 0.0031, 0.0032, 0.0024, 0.0020)  # incisal edge below the mouth line
_LOWER_EDGE = (0.0020, 0.0019, 0.0016, 0.0013, 0.0012)  # lower edge below the mouth line (behind the upper)
_REFERENCE_HALF_WIDTH = 0.0245


@dataclass(frozen=True, eq=False)
class MouthMesh:
    """The head with its mouth interior appended, ready to render.

    Attributes:
        vertices: ``[T,V+M,3]`` float32, the head's vertices followed by the mouth's.
        faces: ``[F+Fm,3]`` int64, the head's faces followed by the mouth's.
        colors: ``[V+M,3]`` float32 albedo in [0,1] (None if no head albedo was given).
        mouth_faces: ``[K]`` int64 indices into ``faces`` of everything inside the mouth (the head's cavity, the
            teeth, the tongue): what a portrait warp cannot take from a closed-mouth reference
            (``render.warp.mesh_flow(..., mouth_faces=...)``).
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None
    mouth_faces: np.ndarray


@dataclass(frozen=True, eq=False)
class MouthInterior:
    """Teeth and tongue built for one identity, and the head vertices they are attached by.

    Attributes:
        vertices: ``[M,3]`` float64 rest positions, in the space of the neutral mesh they were built from.
        faces: ``[Fm,3]`` int64 indices into ``vertices`` (outward, counter-clockwise seen from outside).
        colors: ``[M,3]`` float32 albedo (teeth white-ish, tongue pink, both darker deeper in the mouth).
        part: ``[M]`` int8: 0 upper teeth (skull), 1 lower teeth (jaw), 2 tongue (jaw).
        skull_anchors: ``[Ns]`` head vertex ids that move rigidly with the skull.
        jaw_anchors: ``[Nj]`` head vertex ids that move rigidly with the jaw.
        skull_rest: ``[Ns,3]`` their positions in the neutral.
        jaw_rest: ``[Nj,3]`` likewise.
        cavity: ``[C]`` head vertex ids of the mouth cavity (their faces join ``MouthMesh.mouth_faces``).
        num_head_vertices: V.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    part: np.ndarray
    skull_anchors: np.ndarray
    jaw_anchors: np.ndarray
    skull_rest: np.ndarray
    jaw_rest: np.ndarray
    cavity: np.ndarray
    num_head_vertices: int

    @property
    def num_vertices(self) -> int:
        """M."""
        return int(len(self.vertices))

    def transforms(self, animated: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-frame rigid transforms of the skull and the jaw, ``x -> x @ R^T + t`` from the neutral's space.

        Args:
            animated: ``[T,V,3]`` (or ``[V,3]``) head vertices.

        Returns:
            ``(R_skull [T,3,3], t_skull [T,3], R_jaw [T,3,3], t_jaw [T,3])`` float64.
        """
        animated = self._check(animated)
        r_s, t_s = rigid_fit(self.skull_rest, animated[:, self.skull_anchors])
        r_j, t_j = rigid_fit(self.jaw_rest, animated[:, self.jaw_anchors])
        return r_s, t_s, r_j, t_j

    def place(self, animated: np.ndarray) -> np.ndarray:
        """Mouth vertices following the head: ``[T,V,3]`` head vertices -> ``[T,M,3]`` float32."""
        r_s, t_s, r_j, t_j = self.transforms(animated)
        on_jaw = (self.part != UPPER)[None, :, None]
        skull = np.einsum("mc,tdc->tmd", self.vertices, r_s) + t_s[:, None]
        jaw = np.einsum("mc,tdc->tmd", self.vertices, r_j) + t_j[:, None]
        return np.where(on_jaw, jaw, skull).astype(np.float32)

    def attach(self, animated: np.ndarray, faces: np.ndarray, albedo: np.ndarray | None = None) -> MouthMesh:
        """The head with its teeth and tongue appended.

        Args:
            animated: ``[T,V,3]`` (or ``[V,3]``) head vertices (any space: world, camera).
            faces: ``[F,3]`` head faces.
            albedo: optional ``[V,3]`` head colours; the mouth's are appended.

        Returns:
            A :class:`MouthMesh`.
        """
        animated = self._check(animated)
        faces = np.asarray(faces, np.int64)
        n_v = self.num_head_vertices
        vertices = np.concatenate([animated.astype(np.float32), self.place(animated)], axis=1)
        cavity = np.zeros(n_v, bool)
        cavity[self.cavity] = True
        head_mouth = np.flatnonzero(cavity[faces].any(axis=1))
        own = len(faces) + np.arange(len(self.faces))
        colors = None
        if albedo is not None:
            albedo = np.asarray(albedo, np.float32)
            if albedo.shape != (n_v, 3):
                raise ValueError(
                    f"MouthInterior.attach: `albedo` must be [V,3] with V={n_v}, got {albedo.shape}."
                )
            colors = np.concatenate([albedo, self.colors])
        return MouthMesh(
            vertices=vertices,
            faces=np.concatenate([faces, self.faces + n_v]),
            colors=colors,
            mouth_faces=np.concatenate([head_mouth, own]).astype(np.int64),
        )

    def _check(self, animated: np.ndarray) -> np.ndarray:
        animated = np.asarray(animated)
        if animated.ndim == 2:
            animated = animated[None]
        if animated.ndim != 3 or animated.shape[1:] != (self.num_head_vertices, 3):
            raise ValueError(
                f"MouthInterior: head vertices must be [T,V,3] with V={self.num_head_vertices}, got "
                f"{animated.shape}."
            )
        return animated


def rigid_fit(rest: np.ndarray, moved: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares rigid transform (Kabsch, no scaling, no reflection) from ``rest`` to each frame of ``moved``.

    Args:
        rest: ``[N,3]`` points.
        moved: ``[T,N,3]`` the same points per frame.

    Returns:
        ``(R [T,3,3], t [T,3])`` float64 with ``moved[t] ~= rest @ R[t]^T + t[t]``.
    """
    rest = np.asarray(rest, np.float64)
    moved = np.asarray(moved, np.float64)
    p0 = rest.mean(0)
    q0 = moved.mean(1)
    cov = np.einsum("nc,tnd->tcd", rest - p0, moved - q0[:, None])  # [T,3,3] = P^T Q
    u, _, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(np.einsum("tij,tjk->tik", u, vt)))
    fix = np.ones((len(moved), 3))
    fix[:, 2] = d
    rot = np.einsum("tji,tj,tkj->tik", vt, fix, u)  # V diag(1,1,d) U^T
    return rot, q0 - np.einsum("tij,j->ti", rot, p0)


# ------------------------------------------------------------------------------------------------ building
def _anchors(model: Mapping, joint: int, region: np.ndarray, tol: float) -> np.ndarray:
    """Vertices skinned (almost) only to ``joint`` with no expression / pose-corrective displacement, preferring
    those in ``region`` (the cavity: near the teeth, so the fit is local)."""
    weights = np.asarray(model["weights"], np.float64)
    shapedirs = np.asarray(model["shapedirs"])
    n_id = min(_N_SHAPE_FILE, shapedirs.shape[2])
    expr = np.linalg.norm(shapedirs[:, :, n_id:], axis=1).max(1) if shapedirs.shape[2] > n_id else 0.0
    pose = np.linalg.norm(np.asarray(model["posedirs"]), axis=1).max(1)
    rigid = (weights[:, joint] > 1.0 - 1e-3) & (expr < tol) & (pose < tol)
    inside = rigid.copy()
    inside[np.setdiff1d(np.arange(len(rigid)), region)] = False
    ids = np.flatnonzero(inside if inside.sum() >= 6 else rigid)
    points = np.asarray(model["v_template"], np.float64)[ids]
    spread = np.linalg.svd(points - points.mean(0), compute_uv=False) if len(ids) >= 3 else np.zeros(3)
    if len(ids) < 3 or spread[1] < 1e-3:
        name = "neck (head)" if joint == _NECK else "jaw"
        raise ValueError(
            f"build_mouth_interior: the face model has no vertices that move rigidly with the {name} joint to "
            "attach teeth to; it needs the procedural head's mouth cavity (motion.face.procedural)."
        )
    return ids


def _rounded_box(n_lat: int = 5, n_lon: int = 10, exponent: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """A superellipsoid filling ``[-1,1]^3`` (a box with rounded edges): ``(verts [N,3], faces [K,3])``, the
    poles on the y axis, faces outward."""

    def spow(c: np.ndarray) -> np.ndarray:
        return np.sign(c) * np.abs(c) ** exponent

    theta = np.linspace(-np.pi / 2, np.pi / 2, n_lat + 2)[1:-1]
    phi = np.linspace(0.0, 2 * np.pi, n_lon, endpoint=False)
    ct, st = spow(np.cos(theta))[:, None], spow(np.sin(theta))[:, None]
    ring = np.stack(
        [ct * spow(np.cos(phi))[None], np.broadcast_to(st, (n_lat, n_lon)), ct * spow(np.sin(phi))[None]], -1
    ).reshape(-1, 3)
    verts = np.concatenate([[[0.0, -1.0, 0.0]], ring, [[0.0, 1.0, 0.0]]])
    ids = 1 + np.arange(n_lat * n_lon).reshape(n_lat, n_lon)
    nxt = np.roll(ids, -1, axis=1)
    faces = [
        np.stack([ids[:-1], ids[1:], nxt[:-1]], -1).reshape(-1, 3),
        np.stack([nxt[:-1], ids[1:], nxt[1:]], -1).reshape(-1, 3),
        np.stack([np.zeros(n_lon, int), ids[0], nxt[0]], -1),
        np.stack([np.full(n_lon, len(verts) - 1), nxt[-1], ids[-1]], -1),
    ]
    f = np.concatenate(faces)
    tri = verts[f]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = (normal * tri.mean(1)).sum(-1) < 0
    f[flip] = f[flip][:, ::-1]
    return verts, f.astype(np.int64)


@dataclass(frozen=True)
class _Arch:
    """A parabolic dental arch in the x-z plane: ``z(x) = front - curve * x^2``."""

    front: float
    curve: float

    def point_at(self, arc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, z, outward unit normal [n,2])`` at signed arc lengths ``arc`` from the front centre."""
        xs = np.linspace(0.0, 0.06, 2001)
        slope = 2 * self.curve * xs
        length = np.concatenate([[0.0], np.cumsum(np.sqrt(1 + slope[1:] ** 2) * np.diff(xs))])
        x = np.sign(arc) * np.interp(np.abs(arc), length, xs)
        z = self.front - self.curve * x**2
        normal = np.stack([2 * self.curve * x, np.ones_like(x)], -1)
        return x, z, normal / np.linalg.norm(normal, axis=-1, keepdims=True)


def _teeth_row(
    arch: _Arch, widths: np.ndarray, edges: np.ndarray, mouth_y: float, height: float, upper: bool
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Rounded-box teeth along ``arch``, symmetric, incisal edges ``edges`` below ``mouth_y``: per tooth its
    vertices, its faces (indices into its own vertices) and its depth behind the arch's front."""
    unit, unit_faces = _rounded_box()
    verts, faces, depth = [], [], []
    gap = 0.0004
    centres = np.cumsum(widths) - 0.5 * widths  # arc length of each tooth's centre, one side
    for side in (1.0, -1.0):
        for k, (w, c, e) in enumerate(zip(widths, centres, edges, strict=True)):
            x, z, n = arch.point_at(np.array([side * c]))
            thick = 0.0028 + 0.0012 * min(k, 3) / 3  # incisors are thin blades, premolars stubbier
            half = np.array([0.5 * w - gap, 0.5 * height, 0.5 * thick])
            local = unit * half
            tangent = np.array([n[0, 1], -n[0, 0]])  # along the arch, in the x-z plane
            y_centre = mouth_y - e + (0.5 * height if upper else -0.5 * height)
            p = np.stack(
                [
                    x[0] + local[:, 0] * tangent[0] + local[:, 2] * n[0, 0],
                    y_centre + local[:, 1],
                    z[0] + local[:, 0] * tangent[1] + local[:, 2] * n[0, 1],
                ],
                -1,
            )
            verts.append(p)
            faces.append(unit_faces)
            depth.append(np.full(len(p), arch.front - z[0]))
    return verts, faces, depth


def _tongue(front: float, mouth_y: float, half_width: float) -> tuple[np.ndarray, np.ndarray]:
    """A flattened ellipsoid, narrower toward its tip, on the cavity floor behind the lower teeth."""
    unit, faces = _rounded_box(n_lat=8, n_lon=16, exponent=1.0)
    radii = np.array([0.64 * half_width, 0.0055, 0.021])
    centre = np.array([0.0, mouth_y - 0.0098, front - 0.0285])
    taper = 1.0 - 0.35 * np.clip(unit[:, 2], 0.0, 1.0) ** 2  # the front half narrows to a rounded tip
    local = unit * radii
    local[:, 0] *= taper
    local[:, 1] -= 0.0025 * unit[:, 2] * (unit[:, 1] > 0)  # the top slopes down toward the tip
    return local + centre, faces


def build_mouth_interior(
    neutral: np.ndarray,
    model: Mapping,
    masks: Mapping[str, np.ndarray],
    seed: int = 0,
    anchor_tolerance: float = 1e-5,
) -> MouthInterior:
    """Teeth and tongue fitted to one identity of the procedural head.

    Args:
        neutral: ``[V,3]`` the identity at rest (shape applied; zero expression and pose), in the space the
            transforms will map from: model space for FLAME parameters.
        model: the FLAME-format model dict (``ProceduralFace.model`` or ``motion.face.flame_io.load_flame_model``):
            ``weights``, ``shapedirs``, ``posedirs``, ``v_template``.
        masks: region masks with ``lip_upper_edge``, ``lip_lower_edge`` and ``mouth_interior``
            (``ProceduralFace.masks`` / its ``FLAME_masks.pkl``).
        seed: varies the teeth's shade, the tongue's colour and the tooth sizes a little.
        anchor_tolerance: largest expression / pose-corrective displacement (metres per unit coefficient) of a
            vertex still counted as moving rigidly with its joint.

    Returns:
        A :class:`MouthInterior`.
    """
    neutral = np.asarray(neutral, np.float64)
    n_v = int(np.shape(model["v_template"])[0])
    if neutral.shape != (n_v, 3):
        raise ValueError(f"build_mouth_interior: `neutral` must be [V,3] with V={n_v}, got {neutral.shape}.")
    missing = {"lip_upper_edge", "lip_lower_edge", "mouth_interior"} - set(masks)
    if missing:
        raise ValueError(
            f"build_mouth_interior: the masks lack {sorted(missing)}; pass the procedural head's masks "
            "(motion.face.procedural.build_procedural_face().masks)."
        )
    rng = np.random.default_rng([int(seed), 7])
    cavity = np.asarray(masks["mouth_interior"], np.int64)
    edges = np.concatenate([np.asarray(masks["lip_upper_edge"]), np.asarray(masks["lip_lower_edge"])])
    rim = neutral[edges]
    mouth_y = float(rim[:, 1].mean())
    half_width = float(np.abs(rim[:, 0] - rim[:, 0].mean()).max())
    scale = half_width / _REFERENCE_HALF_WIDTH * rng.uniform(0.95, 1.05)
    centre = rim[np.argsort(np.abs(rim[:, 0] - rim[:, 0].mean()))[:4]]
    # arch: its front a few mm behind the slit, curving back ~10 mm at the canines like a real dental arch
    upper_arch = _Arch(front=float(centre[:, 2].mean()) - 0.0052, curve=34.0 / scale)
    lower_arch = _Arch(front=upper_arch.front - 0.0024, curve=upper_arch.curve * 1.08)
    x0 = float(rim[:, 0].mean())
    parts_v, parts_f, parts_d, part_id = [], [], [], []
    count = 0
    for arch, widths, edge, upper, label in (
        (upper_arch, _UPPER_WIDTHS, _UPPER_EDGE, True, UPPER),
        (lower_arch, _LOWER_WIDTHS, _LOWER_EDGE, False, LOWER),
    ):
        v, f, d = _teeth_row(arch, np.asarray(widths) * scale, np.asarray(edge), mouth_y, 0.0095, upper)
        for vi, fi, di in zip(v, f, d, strict=True):
            parts_v.append(vi)
            parts_f.append(fi + count)
            parts_d.append(di)
            part_id.append(np.full(len(vi), label, np.int8))
            count += len(vi)
    tv, tf = _tongue(upper_arch.front, mouth_y, half_width)
    parts_v.append(tv)
    parts_f.append(tf + count)
    parts_d.append(upper_arch.front - tv[:, 2])
    part_id.append(np.full(len(tv), TONGUE, np.int8))
    verts = np.concatenate(parts_v)
    verts[:, 0] += x0
    part = np.concatenate(part_id)
    depth = np.concatenate(parts_d)

    teeth = (
        np.array([0.93, 0.91, 0.84]) * rng.uniform(0.86, 1.0) * np.array([1.0, 1.0, rng.uniform(0.88, 1.0)])
    )
    tongue = np.array([0.78, 0.42, 0.44]) * rng.uniform(0.8, 1.0) + rng.normal(0.0, 0.02, 3)
    colors = np.where((part == TONGUE)[:, None], tongue, teeth)
    colors = colors * (0.45 + 0.55 * np.exp(-np.maximum(depth, 0.0) / 0.014))[:, None]

    skull = _anchors(model, _NECK, cavity, anchor_tolerance)
    jaw = _anchors(model, _JAW, cavity, anchor_tolerance)
    return MouthInterior(
        vertices=verts,
        faces=np.concatenate(parts_f).astype(np.int64),
        colors=np.clip(colors, 0.0, 1.0).astype(np.float32),
        part=part,
        skull_anchors=skull,
        jaw_anchors=jaw,
        skull_rest=neutral[skull].copy(),
        jaw_rest=neutral[jaw].copy(),
        cavity=cavity,
        num_head_vertices=n_v,
    )
