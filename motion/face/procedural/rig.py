"""Rig of the procedural face: skinning weights, joint regressor, blendshapes and region masks.

Every blendshape is a smooth displacement field evaluated at the rest position of each vertex, so the two copies
of a mouth-slit vertex (which share a rest position) move together: lips stay closed under any identity shape.
Only the lip-opening fields and the jaw weights look at which side of the slit a vertex is on.
"""

from __future__ import annotations

import numpy as np

from motion.face.procedural import geometry as geo
from motion.face.procedural.mesh import EYE_L, EYE_R, FLOOR, ROOF, SKIN, MeshParts

N_SHAPE, N_EXPRESSION = 300, 100
MW = geo.MOUTH_HALF_WIDTH


def _ss(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _gauss(p: np.ndarray, c, s) -> np.ndarray:
    q = (p - np.asarray(c, float)) / np.asarray(s, float)
    return np.exp(-0.5 * (q * q).sum(-1))


def _mirror_gauss(p: np.ndarray, c, s) -> np.ndarray:
    """Sum of a bump and its left/right mirror, and the sign of x (for outward-pointing x displacements)."""
    c = np.asarray(c, float)
    return _gauss(p, c, s) + _gauss(p, c * np.array([-1, 1, 1]), s)


def lower_side(
    p: np.ndarray, side: np.ndarray, lateral_drop: float = 0.0, sharp_slit: bool = False
) -> np.ndarray:
    """How much a vertex belongs below the mouth line, in [0,1].

    Sharp (a step) across the slit, where upper and lower lips are separate vertices, and smooth beyond the mouth
    corners where the surface is continuous. ``lateral_drop`` lowers the boundary away from the corners (the jaw
    region ends along a line from the mouth corner toward the jaw angle). ``sharp_slit`` keeps the step sharp up
    to the corners (used by the lip fields so the lip copies are fully upper / lower along the whole slit).
    """
    ax = np.abs(p[:, 0])
    if sharp_slit:
        width = 0.0012 + 0.0125 * _ss((ax - MW) / (0.5 * MW))
    else:
        width = 0.0012 + 0.0125 * _ss((ax - 0.55 * MW) / (0.8 * MW))
    y_b = geo.Y_MOUTH - lateral_drop * np.maximum(ax - MW, 0.0)
    y_eff = p[:, 1] + 0.0015 * side
    return _ss(0.5 + (y_b - y_eff) / (2 * width))


def skinning_weights(m: MeshParts) -> np.ndarray:
    """[V,5] weights over (root, neck, jaw, left eye, right eye); rows sum to one."""
    p = m.vertices
    wj = lower_side(p, m.side, lateral_drop=0.3)
    wj *= _ss((p[:, 2] + 0.022) / 0.045)  # nothing behind the jaw hinge follows the jaw
    wj *= _ss((p[:, 1] + 0.138) / 0.036)  # the throat only partly follows the chin
    # cavity: the roof hangs from the head, the floor from the jaw; both blend from their rim vertex
    rim_fade = np.exp(-m.cavity_depth / 0.006)
    wj = np.where(m.part == ROOF, wj * rim_fade, wj)
    wj = np.where(m.part == FLOOR, 1.0 - (1.0 - wj) * rim_fade, wj)
    wj = np.where((m.part == EYE_L) | (m.part == EYE_R), 0.0, wj)
    neck = _ss((p[:, 1] + 0.19) / 0.065)
    w = np.zeros((len(p), 5))
    w[:, 0] = (1 - wj) * (1 - neck)
    w[:, 1] = (1 - wj) * neck
    w[:, 2] = wj
    for lab, j in ((EYE_L, 3), (EYE_R, 4)):
        w[m.part == lab] = 0.0
        w[m.part == lab, j] = 1.0
    return w


def joint_regressor(m: MeshParts):  # noqa: ANN201 - a scipy.sparse.csc_matrix
    """[5,V] sparse regressor: each joint is the mean of a symmetric set of vertices."""
    p = m.vertices
    rows: list[np.ndarray] = []
    ys = p[m.grid[:, 0], 1]
    weights: list[np.ndarray] = []
    # root, neck: centroid of a neck ring (weighted by arc length: columns are uneven)
    for y in (-0.176, -0.125):
        r = int(np.argmin(np.abs(ys - y)))
        ring = m.grid[r]
        seg = np.linalg.norm(p[np.roll(ring, -1)] - p[ring], axis=1)
        rows.append(ring)
        weights.append(0.5 * (seg + np.roll(seg, 1)))
    r = int(np.argmin(np.abs(ys - geo.JAW_PIVOT[1])))  # jaw: two symmetric side vertices at the hinge
    ring = m.grid[r]
    pick = []
    for s in (1, -1):
        cand = ring[np.sign(p[ring, 0]) == s]
        pick.append(cand[np.argmin(np.abs(p[cand, 2] - geo.JAW_PIVOT[2]))])
    rows.append(np.array(pick))
    rows.append(np.nonzero(m.part == EYE_L)[0])
    rows.append(np.nonzero(m.part == EYE_R)[0])
    weights += [np.ones(len(r)) for r in rows[2:]]
    data, ii, jj = [], [], []
    for j, (ids, w) in enumerate(zip(rows, weights, strict=True)):
        data += (w / w.sum()).tolist()
        ii += [j] * len(ids)
        jj += ids.tolist()
    import scipy.sparse as sp  # deferred: only writing the face needs it, and it costs start-up

    return sp.csc_matrix((data, (ii, jj)), shape=(5, len(p)))


def _lip_windows(p: np.ndarray):
    ax = np.abs(p[:, 0])
    lat = np.where(
        ax < 0.5 * MW, 1.0, 0.5 + 0.5 * np.cos(np.pi * np.clip((ax - 0.5 * MW) / (0.85 * MW), 0, 1))
    )
    vert = np.exp(-(((p[:, 1] - geo.Y_MOUTH) / 0.0115) ** 2))
    front = _ss((p[:, 2] - 0.04) / 0.03)
    return lat, vert, front


def _mouth_area(p: np.ndarray) -> np.ndarray:
    """Window over the lips and the skin around the corners (for narrowing / widening the whole mouth)."""
    ax = np.abs(p[:, 0])
    lat = np.where(ax < 0.9 * MW, 1.0, 0.5 + 0.5 * np.cos(np.pi * np.clip((ax - 0.9 * MW) / MW, 0, 1)))
    vert = np.exp(-(((p[:, 1] - geo.Y_MOUTH) / 0.014) ** 2))
    return lat * vert * _ss((p[:, 2] - 0.03) / 0.03)


def expression_basis(m: MeshParts) -> np.ndarray:
    """[V,3,100] expression blendshapes; columns follow procedural_face.EXPRESSION_NAMES."""
    p = m.vertices
    v = len(p)
    e = np.zeros((v, 3, N_EXPRESSION))
    sx = np.sign(p[:, 0])
    lat, vert, front = _lip_windows(p)
    lips = lat * vert * front
    low = lower_side(p, m.side, sharp_slit=True)
    up = 1.0 - low
    edge = np.exp(-(((p[:, 1] - geo.Y_MOUTH) / 0.0048) ** 2)) * _ss((p[:, 2] - 0.02) / 0.03)
    corner = _mirror_gauss(p, (MW, geo.Y_MOUTH, 0.082), (0.011, 0.011, 0.02))
    # how far the two lip copies separate when the jaw opens: the press must close exactly that profile
    slit_open = lower_side(p, -np.ones(v)) - lower_side(p, np.ones(v))
    # 0 lip_round: protrude and narrow, a small central opening ("oo")
    area = _mouth_area(p)
    e[:, 0, 0] = -0.3 * p[:, 0] * area
    e[:, 2, 0] = 0.0075 * lips
    centre = np.exp(-((p[:, 0] / 0.011) ** 2)) * edge
    e[:, 1, 0] = 0.0011 * centre * (up - low)
    # 1 lip_press: lip edges meet and roll in; closes the gap of a jaw opened by up to ~0.08 rad
    e[:, 1, 1] = (-0.0036 * up + 0.0058 * low) * edge * slit_open
    e[:, 2, 1] = -0.0028 * edge * slit_open - 0.0008 * lips
    # 2 smile: corners up, back and out; cheeks lift
    cheek = _mirror_gauss(p, (0.038, -0.032, 0.07), (0.016, 0.016, 0.02))
    e[:, 0, 2] = 0.0042 * sx * corner + 0.0012 * sx * cheek
    e[:, 1, 2] = 0.0060 * corner + 0.0026 * cheek
    e[:, 2, 2] = -0.0032 * corner + 0.0016 * cheek
    # 3 stretch: mouth widens ("ee"), corners slightly down and back
    wide_corner = _mirror_gauss(p, (MW, geo.Y_MOUTH, 0.08), (0.016, 0.013, 0.02))
    e[:, 0, 3] = 0.0062 * sx * wide_corner + 0.12 * p[:, 0] * lips * (1 - wide_corner)
    e[:, 1, 3] = -0.0012 * wide_corner
    e[:, 2, 3] = -0.0022 * wide_corner
    # 4 brow_raise: brows and forehead skin move up, upper lids lift a little
    forehead = _ss((p[:, 1] - 0.006) / 0.016) * (1.0 - 0.5 * _ss((p[:, 1] - 0.05) / 0.05))
    forehead *= _ss((p[:, 2] - 0.02) / 0.04) * (1.0 - _ss((np.abs(p[:, 0]) - 0.055) / 0.02))
    e[:, 1, 4] = 0.0065 * forehead
    e[:, 2, 4] = 0.0008 * forehead
    # 5 brow_furrow: inner brows down and together
    inner = _mirror_gauss(p, (0.016, 0.022, 0.085), (0.013, 0.010, 0.02))
    e[:, 0, 5] = -0.0032 * sx * inner
    e[:, 1, 5] = -0.0038 * inner
    e[:, 2, 5] = 0.0012 * inner
    # 6, 7 blink_left / blink_right: the lid of that eye closed (ray-cast geometry) minus open
    for k in range(2):
        d = m.closed_lid[k] - p
        d[m.part != SKIN] = 0.0
        e[:, :, 6 + k] = d
    # 8 upper_lip_raise
    ul = up * np.exp(-(((p[:, 1] - geo.Y_MOUTH - 0.005) / 0.009) ** 2)) * lat * front
    e[:, 1, 8] = 0.0042 * ul
    e[:, 2, 8] = 0.0012 * ul
    # 9 lower_lip_depress
    ll = low * np.exp(-(((p[:, 1] - geo.Y_MOUTH + 0.006) / 0.01) ** 2)) * lat * front
    e[:, 1, 9] = -0.0045 * ll
    e[:, 2, 9] = 0.0016 * ll
    # 10 cheek_puff
    puff = _mirror_gauss(p, (0.042, -0.05, 0.055), (0.017, 0.02, 0.028))
    e[:, 0, 10] = 0.0065 * sx * puff
    e[:, 2, 10] = 0.003 * puff + 0.0015 * lips
    # the cavity follows its rim and fades with depth; eyeballs never deform
    fade = np.where((m.part == ROOF) | (m.part == FLOOR), np.exp(-m.cavity_depth / 0.012), 1.0)
    e *= fade[:, None, None]
    e[(m.part == EYE_L) | (m.part == EYE_R)] = 0.0
    return e


def _rigid_eyes(m: MeshParts, d: np.ndarray) -> np.ndarray:
    """Eyeballs translate with the field at their centre, so they stay spheres."""
    for lab, k in ((EYE_L, 0), (EYE_R, 1)):
        idx = m.part == lab
        w = np.exp(-(np.linalg.norm(m.vertices[~idx] - m.eye_centres[k], axis=1) ** 2) / 0.006**2)
        d[idx] = (d[~idx] * w[:, None]).sum(0) / w.sum()
    return d


def shape_basis(m: MeshParts, seed: int = 0) -> np.ndarray:
    """[V,3,300] identity blendshapes: 16 named global/regional deformations, then random smooth ones; unit
    coefficients are about one standard deviation of adult variation."""
    p = m.vertices
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    sx = np.sign(x)
    front = _ss((z - 0.0) / 0.06)
    lat, vert, lfront = _lip_windows(p)
    lips = lat * vert * lfront
    fields: list[np.ndarray] = []

    def add(dx=0.0, dy=0.0, dz=0.0):
        fields.append(np.stack(np.broadcast_arrays(dx, dy, dz, x), -1)[:, :3].astype(float))

    add(dx=0.045 * x)  # 0 head width
    add(dy=0.035 * (y + 0.03))  # 1 head height
    add(dz=0.05 * np.maximum(z, 0.0) * _ss((0.09 - y) / 0.05))  # 2 face depth
    nose = _gauss(p, (0, -0.018, 0.097), (0.014, 0.024, 0.018))
    base = np.array([0.0, -0.036, 0.086])
    add(*(0.14 * (p - base) * nose[:, None]).T)  # 3 nose size
    add(dz=0.003 * _gauss(p, (0, -0.027, 0.105), (0.012, 0.02, 0.015)))  # 4 nose projection
    lowface = _ss((geo.Y_MOUTH + 0.01 - y) / 0.035) * _ss((y + 0.14) / 0.03)
    add(dx=0.07 * x * lowface)  # 5 jaw width
    chin = _gauss(p, (0, -0.095, 0.075), (0.02, 0.016, 0.02))
    add(dy=-0.0025 * chin, dz=0.0032 * chin)  # 6 chin
    add(dy=0.0012 * np.tanh((y - geo.Y_MOUTH) / 0.003) * lips, dz=0.0016 * lips)  # 7 lip thickness
    add(dx=0.07 * x * _mouth_area(p))  # 8 mouth width
    eyes = _mirror_gauss(p, (geo.EYE_X, geo.EYE_Y, 0.07), (0.02, 0.02, 0.03))
    add(dx=0.002 * np.tanh(x / 0.01) * eyes)  # 9 eye spacing
    brow = _mirror_gauss(p, (0.03, 0.024, 0.08), (0.02, 0.009, 0.015))
    add(dz=0.0022 * brow, dy=0.001 * brow)  # 10 brow ridge
    cheeks = _mirror_gauss(p, (0.045, -0.035, 0.055), (0.02, 0.025, 0.03))
    add(dx=0.0032 * sx * cheeks, dz=0.0015 * cheeks)  # 11 cheek fullness
    add(dz=-0.0045 * _ss((y - 0.03) / 0.07) * front)  # 12 forehead slope
    add(dy=-0.0045 * _ss(-y / 0.1))  # 13 lower-face length
    nw = _gauss(p, (0, -0.032, 0.094), (0.02, 0.012, 0.02))
    add(dx=0.16 * x * nw)  # 14 nose width
    add(*(0.028 * (p - np.array([0, -0.01, -0.01])) * _ss((y + 0.01) / 0.06)[:, None]).T)  # 15 cranium size
    rng = np.random.default_rng(seed)
    for k in range(24):  # 16..39: random smooth (mostly symmetric) variations with decaying amplitude
        d = np.zeros_like(p)
        amp = 0.0018 * (0.93**k)
        for _ in range(3):
            c = np.array([rng.uniform(0, 0.06), rng.uniform(-0.11, 0.09), rng.uniform(0.0, 0.1)])
            s = rng.uniform(0.015, 0.04)
            vec = rng.normal(size=3)
            vec /= np.linalg.norm(vec)
            g1 = _gauss(p, c, s)
            g2 = _gauss(p, c * np.array([-1, 1, 1]), s)
            mirror = vec * np.array([-1, 1, 1])
            d += amp * (g1[:, None] * vec + g2[:, None] * mirror)
        fields.append(d)
    out = np.zeros((len(p), 3, N_SHAPE))
    for k, f in enumerate(fields):
        f = f.copy()
        f[(m.part == ROOF) | (m.part == FLOOR)] *= 1.0  # the cavity deforms with the face around it
        out[:, :, k] = _rigid_eyes(m, f)
    return out


def pose_correctives(m: MeshParts) -> np.ndarray:
    """[V,3,36] small smooth pose correctives (FLAME layout: R - I of neck, jaw, left eye, right eye)."""
    p = m.vertices
    out = np.zeros((len(p), 3, 36))
    skin = (m.part == SKIN).astype(float)
    # jaw opening (feature R[2,1] = sin(angle)): cheeks hollow slightly and the chin skin tightens
    cheek = _mirror_gauss(p, (0.04, -0.055, 0.06), (0.014, 0.016, 0.02))
    out[:, 0, 9 + 7] = -0.006 * np.sign(p[:, 0]) * cheek * skin
    out[:, 2, 9 + 7] = -0.002 * cheek * skin
    # neck pitch: throat skin compresses
    throat = _gauss(p, (0, -0.13, 0.045), (0.025, 0.02, 0.02))
    out[:, 2, 7] = -0.006 * throat * skin
    # eye pitch: the upper lid follows the gaze up/down
    for k, off in ((0, 18), (1, 27)):
        c = m.eye_centres[k]
        lid = np.exp(-(np.linalg.norm(p - c, axis=1) ** 2) / 0.011**2) * _ss((p[:, 1] - c[1]) / 0.006)
        lid *= _ss((p[:, 2] - c[2]) / 0.006) * skin
        out[:, 1, off + 7] = -0.007 * lid
    return out


def region_masks(m: MeshParts) -> dict[str, np.ndarray]:
    """FLAME_masks-style regions (name -> vertex ids) plus lip-edge and mouth-interior sets."""
    p = m.vertices
    x, y, z = p.T
    skin = m.part == SKIN
    ax = np.abs(x)
    face = skin & (z > 0.02) & (y > -0.115) & (y < 0.075) & (ax < 0.068)
    eye_l = skin & (np.linalg.norm(p - m.eye_centres[0], axis=1) < 0.024) & (z > 0.04)
    eye_r = skin & (np.linalg.norm(p - m.eye_centres[1], axis=1) < 0.024) & (z > 0.04)
    lips = skin & (ax < MW * 1.2) & (np.abs(y - geo.Y_MOUTH) < 0.0135) & (z > 0.06)
    nose = skin & (ax < 0.022) & (y > -0.044) & (y < 0.014) & (z > 0.075)
    forehead = skin & (y > 0.022) & (y < 0.085) & (z > 0.03) & (ax < 0.06)
    masks = {
        "face": face,
        "lips": lips,
        "nose": nose,
        "forehead": forehead,
        "eye_region": eye_l | eye_r,
        "left_eye_region": eye_l,
        "right_eye_region": eye_r,
        "left_eyeball": m.part == EYE_L,
        "right_eyeball": m.part == EYE_R,
        "scalp": skin & ((y > 0.07) | ((z < -0.03) & (y > -0.06))),
        "neck": skin & (y < -0.112) & ~face,
        "left_ear": skin & (x > 0.066) & (np.abs(y + 0.01) < 0.03) & (np.abs(z + 0.014) < 0.02),
        "right_ear": skin & (x < -0.066) & (np.abs(y + 0.01) < 0.03) & (np.abs(z + 0.014) < 0.02),
        "boundary": skin & (y < -0.18),
        "mouth_interior": ((m.part == ROOF) | (m.part == FLOOR)) & (m.cavity_depth > 0),
    }
    out = {k: np.nonzero(v)[0].astype(np.int64) for k, v in masks.items()}
    out["lip_upper_edge"] = m.upper_lip.astype(np.int64)
    out["lip_lower_edge"] = m.lower_lip.astype(np.int64)
    return out
