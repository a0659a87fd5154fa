"""The 52 ARKit targets on the procedural head's topology: ``procedural_arkit_rig() -> BlendshapeRig``.

Every target is one pose of the procedural FLAME-format head (:mod:`motion.face.procedural`) at full activation,
and its delta is ``posed - neutral``, so the rig is linear by construction (weights blend the deltas, nothing is
re-skinned per frame). Three kinds of pose:

- **Joints**, posed through FLAME's linear blend skinning (:func:`motion.face.flame.lbs`, with the head's pose
  correctives): ``jawOpen`` (jaw pitch), ``jawLeft`` / ``jawRight`` (jaw yaw), ``eyeLook*`` (eye-joint rotations;
  the head's eye-pitch correctives make the upper lid follow the gaze), and ``jawForward``, a translation of the
  jaw joint (each vertex moves by its jaw skinning weight).
- **The head's own expressions** (its named expression columns), whole or split into halves: ``eyeBlink*`` (the
  ray-cast closed lid), ``mouthSmile*``, ``mouthStretch*``, ``mouthUpperUp*``, ``mouthLowerDown*``, ``cheekPuff``,
  ``browInnerUp`` + ``browOuterUp*`` (a partition of ``brow_raise``), ``browDown*`` (half of ``brow_furrow``,
  its inward pull redrawn without a step at the midline, plus a lowered brow), ``mouthPucker`` (``lip_round``
  without its opening) and ``mouthFunnel`` (``lip_round`` with a wider opening).
- **Smooth fields** over the head's regions for the rest (eyelid rotations about the eyeball centre for
  ``eyeWide`` / ``eyeSquint``, lip rolls about the lip's own axis, the mouth corners, cheeks, nose wings), each
  a displacement evaluated at the rest position of a vertex, with smooth falloffs, as the head's expression
  basis is built: the two copies of a mouth-slit vertex move together except where a field is meant to split
  the lips (``up`` / ``low``).

Left and right follow ARKit: ``Left`` is the subject's left, +x on this head. A side's target is the field
times a side weight that is 1 on that side and 0 on the other with a 1 cm blend across the symmetry plane x = 0
(the two halves sum to the whole), so ``...Left`` and ``...Right`` mirror each other across x = 0 up to the
head's own (sub-millimetre) asymmetry. ``mouthClose`` is the lip closure of ARKit: alone it presses the lips
through each other; on top of ``jawOpen`` it closes them (the lips meet half way). Targets the head cannot
express are zero deltas, listed in :data:`UNSUPPORTED_TARGETS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from motion.face.blendshapes.arkit import ARKIT_NAMES
from motion.face.blendshapes.rig import BlendshapeRig
from motion.face.flame import lbs
from motion.face.procedural import geometry as geo
from motion.face.procedural.face import EXPRESSION_NAMES, ProceduralFace, build_procedural_face
from motion.face.procedural.rig import lower_side

__all__ = ["JAW_OPEN_RAD", "UNSUPPORTED_TARGETS", "procedural_arkit_rig"]

UNSUPPORTED_TARGETS: tuple[str, ...] = ("tongueOut",)  # the procedural head has no tongue
"""ARKit targets the procedural head cannot express: present in the rig with zero deltas."""

# jawOpen: the lips ~2.5 cm apart at the incisors (the middle of the lips is ~9.5 cm from the jaw joint)
JAW_OPEN_RAD = 0.26
_JAW_SIDE_RAD = 0.10  # jawLeft / jawRight yaw: the chin moves ~8 mm sideways
_JAW_FORWARD_M = 0.005  # jawForward
_LOOK_RAD = {"Up": 0.35, "Down": 0.42, "In": 0.42, "Out": 0.42}  # eye rotation of eyeLook* (~20-24 degrees)
_N_SHAPE_COLUMNS = 300  # FLAME layout: identity columns, then expression columns
_MW, _YM = geo.MOUTH_HALF_WIDTH, geo.Y_MOUTH
_JAW, _EYE = 2, (3, 4)  # joints: root, neck, jaw, left eye, right eye
_Scalars = np.ndarray | float  # a per-vertex [V] array or one value


def _ss(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _gauss(p: np.ndarray, c: Sequence[float], s: Sequence[float]) -> np.ndarray:
    q = (p - np.asarray(c, float)) / np.asarray(s, float)
    return np.exp(-0.5 * (q * q).sum(-1))


def _rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


@dataclass(frozen=True)
class _Head:
    """What the target fields need, derived from the FLAME-format model and its masks (no mesh rebuild).

    Attributes:
        p: ``[V,3]`` template rest positions (fields are evaluated here, identity-independent).
        skin: ``[V]`` True off the eyeballs and the mouth cavity.
        side: ``[V]`` +1 upper-lip slit copies and cavity roof, -1 lower copies and floor, 0 elsewhere.
        cavity_fade: ``[V]`` 1 outside the cavity, decaying with depth behind the lips inside it.
        eyeball: ``[V]`` 0 none, 1 left eyeball, 2 right eyeball.
        eye_centres: ``[2,3]`` left, right (regressed eye joints).
        jaw_joint: ``[3]`` regressed jaw joint of the template.
        expression: ``{name: [V,3]}`` the head's named expression columns.
    """

    p: np.ndarray
    skin: np.ndarray
    side: np.ndarray
    cavity_fade: np.ndarray
    eyeball: np.ndarray
    eye_centres: np.ndarray
    jaw_joint: np.ndarray
    expression: dict[str, np.ndarray]


def _regressor(model: dict) -> np.ndarray:
    """The dense ``[J,V]`` joint regressor (FLAME files hold a scipy sparse matrix)."""
    reg = model["J_regressor"]
    return np.asarray(reg.toarray() if hasattr(reg, "toarray") else reg, np.float64)


def _head(face: ProceduralFace) -> _Head:
    model, masks = face.model, face.masks
    p = np.asarray(model["v_template"], np.float64)
    n = len(p)
    joints = _regressor(model) @ p  # [5,3]
    cavity = np.zeros(n, bool)
    cavity[masks["mouth_interior"]] = True
    eyeball = np.zeros(n, np.int64)
    eyeball[masks["left_eyeball"]] = 1
    eyeball[masks["right_eyeball"]] = 2
    side = np.zeros(n, np.int64)
    side[masks["lip_upper_edge"]] = 1
    side[masks["lip_lower_edge"]] = -1
    # the cavity roof hangs from the head (jaw weight <= 0.25), the floor from the jaw (>= 0.8)
    side[cavity] = np.where(np.asarray(model["weights"])[cavity, _JAW] < 0.5, 1, -1)
    edge = np.concatenate([masks["lip_upper_edge"], masks["lip_lower_edge"]])
    depth = np.linalg.norm(p[cavity, None] - p[None, edge], axis=-1).min(1)  # behind the lips
    fade = np.ones(n)
    fade[cavity] = np.exp(-depth / 0.012)
    shapedirs = np.asarray(model["shapedirs"])
    expression = {k: shapedirs[:, :, _N_SHAPE_COLUMNS + i] for i, k in enumerate(EXPRESSION_NAMES)}
    return _Head(p, ~cavity & (eyeball == 0), side, fade, eyeball, joints[[3, 4]], joints[_JAW], expression)


def _side_weight(x: np.ndarray, sign: float) -> np.ndarray:
    """1 on the ``sign`` side of x = 0, 0 on the other, a 1 cm smooth blend between; the two sides sum to 1."""
    return _ss((sign * x + 0.01) / 0.02)


def _vec(dx: _Scalars = 0.0, dy: _Scalars = 0.0, dz: _Scalars = 0.0) -> np.ndarray:
    """``[V,3]`` displacement from its components (scalars broadcast)."""
    return np.stack(np.broadcast_arrays(dx, dy, dz), -1).astype(np.float64)


def _lip_zone(p: np.ndarray, sigma_y: float = 0.0115, lateral: float = 0.5) -> np.ndarray:
    """The lips (flat over the middle, cosine falloff toward and past the corners), as the head's lip windows."""
    ax = np.abs(p[:, 0])
    lat = 0.5 + 0.5 * np.cos(np.pi * np.clip((ax - lateral * _MW) / (0.85 * _MW), 0, 1))
    return lat * np.exp(-(((p[:, 1] - _YM) / sigma_y) ** 2)) * _ss((p[:, 2] - 0.04) / 0.03)


def _eye_fields(h: _Head, k: int, sign: float) -> dict[str, np.ndarray]:
    """eyeWide / eyeSquint of one eye: lid skin rotated about the eyeball centre (it slides over the eye)."""
    p, c = h.p, h.eye_centres[k]
    q = p - c
    r = np.linalg.norm(q, axis=1)
    around = _ss((0.021 - r) / 0.007) * _ss((q[:, 2] + 0.002) / 0.006) * h.skin
    upper = around * _ss((q[:, 1] + 0.001) / 0.005)
    lower = around * _ss((-q[:, 1] + 0.001) / 0.005)

    def turn(window: np.ndarray, angle: float) -> np.ndarray:  # negative angle: the front of the eye goes up
        return window[:, None] * (q @ (_rot_x(angle) - np.eye(3)).T)

    cheek = _gauss(p, (sign * 0.034, -0.019, 0.066), (0.013, 0.009, 0.018)) * h.skin
    return {
        "eyeWide": turn(upper, -0.16),
        "eyeSquint": turn(lower, -0.13) + turn(upper, 0.05) + _vec(dy=0.0014 * cheek, dz=0.0004 * cheek),
    }


def _mouth_close(h: _Head) -> np.ndarray:
    """Half of the jawOpen lip gap, upper lip down and lower lip up: on top of jawOpen the lips meet."""
    p = h.p
    ones = np.ones(len(p))
    # how far the two slit copies separate with the jaw (their jaw skinning weights differ by this; rig.py)
    opening = lower_side(p, -ones, lateral_drop=0.3) - lower_side(p, ones, lateral_drop=0.3)
    swing = (p - h.jaw_joint) @ (_rot_x(JAW_OPEN_RAD) - np.eye(3)).T  # rigid jawOpen swing at rest positions
    low = lower_side(p, h.side, sharp_slit=True)
    zone = _lip_zone(p, sigma_y=0.012, lateral=1.1)
    return 0.5 * swing * (opening * zone * (1.0 - 2.0 * low))[:, None]


def _mouth_fields(h: _Head) -> dict[str, np.ndarray]:
    """The smooth fields of the mouth targets that have no side."""
    p = h.p
    x, y, z = p.T
    low = lower_side(p, h.side, sharp_slit=True)
    up = 1.0 - low
    lips = _lip_zone(p)
    centre = np.exp(-((x / 0.014) ** 2))
    edge = np.exp(-(((y - _YM) / 0.006) ** 2)) * _ss((z - 0.04) / 0.03)
    out = {
        "mouthClose": _mouth_close(h),
        "mouthFunnel": _vec(dy=0.0032 * centre * edge * (up - low), dz=0.0015 * lips),  # plus lip_round
    }
    area = _lip_zone(p, sigma_y=0.016, lateral=1.0) * _ss((z - 0.03) / 0.03)
    for name, s in (("Left", 1.0), ("Right", -1.0)):
        # the mouth slides along the face, so a corner moving outward also moves back (face radius ~7 cm), and
        # the corner it moves toward tucks in (so mouthLeft is not exactly minus mouthRight)
        tuck = _gauss(p, (s * _MW, _YM, 0.08), (0.009, 0.009, 0.02))
        out["mouth" + name] = _vec(dx=s * 0.0055 * area, dz=-s * 0.0055 * area * x / 0.07 - 0.0015 * tuck)
    rolls = (
        ("mouthRollLower", low, (_YM - 0.006, 0.075), -0.5),
        ("mouthRollUpper", up, (_YM + 0.006, 0.079), 0.5),
    )
    for name, half, (ay, az), angle in rolls:  # the lip turns about its own horizontal axis, edge inward
        q = p - np.array([0.0, ay, az])
        out[name] = (half * lips)[:, None] * (q @ (_rot_x(angle) - np.eye(3)).T)
    chin = _gauss(p, (0, _YM - 0.013, 0.08), (0.018, 0.013, 0.025))
    out["mouthShrugLower"] = _vec(dy=0.0032 * chin, dz=0.0016 * chin)
    ul = _gauss(p, (0, _YM + 0.007, 0.088), (0.02, 0.009, 0.02))
    out["mouthShrugUpper"] = _vec(dy=0.0024 * ul, dz=0.0012 * ul)
    return out


def _sided_fields(h: _Head, s: float) -> dict[str, np.ndarray]:
    """The smooth fields of one side's targets (s = +1 left, -1 right), before the side weight."""
    p = h.p
    x, y = p[:, 0], p[:, 1]
    corner = _gauss(p, (s * _MW, _YM, 0.082), (0.011, 0.011, 0.02))
    dimple = _gauss(p, (s * (_MW + 0.002), _YM, 0.08), (0.008, 0.008, 0.02))
    lips = _lip_zone(p, sigma_y=0.011, lateral=0.9)
    brow = _gauss(p, (s * 0.03, 0.024, 0.08), (0.018, 0.01, 0.02))
    furrow = _gauss(p, (s * 0.016, 0.022, 0.085), (0.013, 0.010, 0.02))
    cheek = _gauss(p, (s * 0.038, -0.016, 0.068), (0.016, 0.011, 0.02))
    ala = _gauss(p, (s * 0.012, -0.031, 0.092), (0.009, 0.009, 0.012))
    bridge = _gauss(p, (s * 0.008, -0.006, 0.086), (0.006, 0.012, 0.01))
    return {
        "mouthFrown": _vec(dx=s * 0.0010 * corner, dy=-0.0042 * corner, dz=-0.0010 * corner),
        "mouthDimple": _vec(dx=s * 0.0022 * dimple, dz=-0.0030 * dimple),
        "mouthPress": _vec(dy=-0.3 * (y - _YM) * lips, dz=-0.0012 * lips),
        # the inner brows drawn together, fading to 0 at the midline (plus the y and z of brow_furrow)
        "browDown": _vec(
            dx=-s * 0.0032 * furrow * (1.0 - np.exp(-((x / 0.006) ** 2))), dy=-0.003 * brow, dz=0.0005 * brow
        ),
        "cheekSquint": _vec(dx=s * 0.0003 * cheek, dy=0.0028 * cheek, dz=0.0008 * cheek),
        "noseSneer": _vec(dy=0.0028 * ala + 0.0010 * bridge, dz=0.0004 * ala),
    }


def _expression_parts(h: _Head) -> dict[str, np.ndarray]:
    """The targets' shares of the head's own expression columns (the head already fades them in the cavity and
    keeps them off the eyeballs), side targets already weighted to their side."""
    e = h.expression
    round_, inner = e["lip_round"], np.exp(-((h.p[:, 0] / 0.022) ** 2))[:, None]
    out = {
        # lip_round is narrowing (x), protrusion (z) and a small central opening (y)
        "mouthFunnel": round_ * [0.7, 1.0, 1.0],
        "mouthPucker": round_ * [1.0, 0.0, 1.3],
        "cheekPuff": e["cheek_puff"],
        "browInnerUp": e["brow_raise"] * inner,
    }
    sided = {
        "mouthSmile": e["smile"],
        "mouthStretch": e["stretch"],
        "mouthLowerDown": e["lower_lip_depress"],
        "mouthUpperUp": e["upper_lip_raise"],
        # brow_furrow's x is a step at the midline (sign(x)) that one side alone would show as a crease: dropped,
        # and redrawn smoothly in _sided_fields
        "browDown": e["brow_furrow"] * [0.0, 1.0, 1.0],
        "browOuterUp": e["brow_raise"] * (1.0 - inner),
    }
    for name, s in (("Left", 1.0), ("Right", -1.0)):
        weight = _side_weight(h.p[:, 0], s)[:, None]
        out.update({base + name: field * weight for base, field in sided.items()})
    out["eyeBlinkLeft"], out["eyeBlinkRight"] = e["blink_left"], e["blink_right"]
    return out


def _fields(h: _Head) -> dict[str, np.ndarray]:
    """Every additive (non-joint) target: name -> ``[V,3]`` rest-space displacement."""
    custom = _mouth_fields(h)
    for k, (name, s) in enumerate((("Left", 1.0), ("Right", -1.0))):
        weight = _side_weight(h.p[:, 0], s)[:, None]
        for base, field in (_sided_fields(h, s) | _eye_fields(h, k, s)).items():
            custom[base + name] = field * weight
    # the mouth cavity follows its rim and fades with depth; eyeballs never deform (eyeLook rotates them)
    keep = (h.cavity_fade * (h.eyeball == 0))[:, None]
    out = {name: field * keep for name, field in custom.items()}
    for name, field in _expression_parts(h).items():
        out[name] = out[name] + field if name in out else field
    return out


def _poses() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Joint targets: name -> (axis-angle per joint ``[5,3]``, jaw translation ``[3]``)."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def add(name: str, joint: int, axis_angle: Sequence[float], shift: Sequence[float] = (0, 0, 0)) -> None:
        pose = np.zeros((5, 3))
        pose[joint] = axis_angle
        out[name] = (pose, np.asarray(shift, float))

    add("jawOpen", _JAW, (JAW_OPEN_RAD, 0, 0))
    add("jawLeft", _JAW, (0, _JAW_SIDE_RAD, 0))  # +y yaw swings the chin toward +x, the subject's left
    add("jawRight", _JAW, (0, -_JAW_SIDE_RAD, 0))
    add("jawForward", _JAW, (0, 0, 0), (0, 0, _JAW_FORWARD_M))
    for k, (name, s) in enumerate((("Left", 1.0), ("Right", -1.0))):
        j = _EYE[k]
        add("eyeLookUp" + name, j, (-_LOOK_RAD["Up"], 0, 0))  # -x pitch turns the front of the eye up
        add("eyeLookDown" + name, j, (_LOOK_RAD["Down"], 0, 0))
        add("eyeLookIn" + name, j, (0, -s * _LOOK_RAD["In"], 0))  # toward the nose: -x for the left eye
        add("eyeLookOut" + name, j, (0, s * _LOOK_RAD["Out"], 0))
    return out


def _targets(face: ProceduralFace, shape: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(neutral [V,3], deltas [52,V,3])`` float64, in ARKit order."""
    model = face.model
    h = _head(face)
    neutral = h.p.copy()
    if shape is not None and shape.size:
        dirs = np.asarray(model["shapedirs"])[:, :, : shape.size]
        neutral = neutral + dirs @ shape
    fields, poses = _fields(h), _poses()
    names = [n for n in ARKIT_NAMES if n in fields or n in poses]
    rest = np.stack([neutral + fields[n] if n in fields else neutral for n in names])
    pose = np.stack([poses[n][0] if n in poses else np.zeros((5, 3)) for n in names])
    f64 = torch.float64
    weights = torch.as_tensor(np.asarray(model["weights"]), dtype=f64)
    n_v = len(neutral)
    with torch.no_grad():
        posed, _ = lbs(
            torch.as_tensor(rest, dtype=f64),
            torch.as_tensor(pose, dtype=f64),
            torch.as_tensor(np.asarray(model["posedirs"]).reshape(n_v * 3, -1).T.copy(), dtype=f64),
            torch.as_tensor(_regressor(model), dtype=f64),
            [-1] + [int(j) for j in np.asarray(model["kintree_table"])[0, 1:]],  # root, neck, jaw, eyes
            weights,
        )
    posed = posed.numpy()
    jaw_weight = weights[:, _JAW].numpy()
    deltas = np.zeros((len(ARKIT_NAMES), n_v, 3))
    for i, n in enumerate(names):
        d = posed[i] - neutral
        if n in poses:  # a translated jaw joint moves each vertex by its jaw weight
            d = d + jaw_weight[:, None] * poses[n][1]
        deltas[ARKIT_NAMES.index(n)] = d
    missing = set(ARKIT_NAMES) - set(names)
    if missing != set(UNSUPPORTED_TARGETS):  # a guard for edits of this file, not a user error
        raise AssertionError(f"procedural ARKit rig: targets without a recipe: {sorted(missing)}")
    return neutral, deltas


@lru_cache(maxsize=8)
def _cached(seed: int, shape: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    face = build_procedural_face(seed)
    neutral, deltas = _targets(face, np.asarray(shape, np.float64) if shape else None)
    return neutral, deltas, np.asarray(face.model["f"]).astype(np.int64)  # private: BlendshapeRig copies them


def procedural_arkit_rig(
    shape: Sequence[float] | np.ndarray | None = None,
    seed: int = 0,
    face: ProceduralFace | None = None,
) -> BlendshapeRig:
    """The ARKit-52 blendshape rig of the procedural head, in :data:`~motion.face.blendshapes.arkit.ARKIT_NAMES`
    order (targets in :data:`UNSUPPORTED_TARGETS` are zero deltas).

    Deterministic. The arrays are cached per ``(seed, shape)``, so later calls only copy them; the first call costs
    the head's own build (:func:`~motion.face.procedural.face.build_procedural_face`, itself cached per process)
    plus about 0.2 s for the targets.

    Args:
        shape: identity coefficients of the head (a synthetic speaker's ``shape``; the leading identity columns);
            None or empty gives the template. Fields are evaluated at the template's rest positions and the joints
            are regressed from the shaped mesh, as the head's own expressions and FLAME's skinning do, so the
            rig of a speaker reproduces that speaker's jaw and eye motion.
        seed: seed of the head's random identity columns (see ``build_procedural_face``).
        face: an already built (or loaded) procedural head to use instead of building one from ``seed`` (not
            cached); it needs its model's ``v_template``, ``f``, ``shapedirs``, ``posedirs``, ``J_regressor``,
            ``weights`` and the masks ``mouth_interior``, ``left_eyeball``, ``right_eyeball``,
            ``lip_upper_edge``, ``lip_lower_edge``.

    Returns:
        A :class:`~motion.face.blendshapes.rig.BlendshapeRig` with 52 targets, in metres, with the head's faces.
    """
    coeffs = np.zeros(0) if shape is None else np.asarray(shape, np.float64).reshape(-1)
    if coeffs.size > _N_SHAPE_COLUMNS:
        raise ValueError(f"shape has {coeffs.size} coefficients; the procedural head has {_N_SHAPE_COLUMNS}.")
    if face is None:
        neutral, deltas, faces = _cached(int(seed), tuple(coeffs.tolist()))
    else:
        neutral, deltas = _targets(face, coeffs)
        faces = np.asarray(face.model["f"]).astype(np.int64)
    return BlendshapeRig(neutral, deltas, ARKIT_NAMES, faces)
