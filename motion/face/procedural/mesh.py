"""Assembles the procedural face mesh: ray grid -> triangles, mouth slit and cavity, eyeballs.

Part labels (``MeshParts.part``): 0 skin, 1 left eyeball, 2 right eyeball, 3 mouth-cavity roof (moves with the
head), 4 mouth-cavity floor (moves with the jaw).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from motion.face.procedural import geometry as geo

SKIN, EYE_L, EYE_R, ROOF, FLOOR = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class MeshParts:
    vertices: np.ndarray  # [V,3] float64
    faces: np.ndarray  # [F,3] int64, outward (counter-clockwise seen from outside)
    part: np.ndarray  # [V] int
    side: np.ndarray  # [V] +1 upper-lip slit copy (and roof), -1 lower copy (and floor), 0 elsewhere
    grid: np.ndarray  # [R,C] vertex ids of the ray grid (upper copies on the mouth row)
    mouth_row: int  # row of `grid` that holds the mouth line
    slit_cols: np.ndarray  # [n] grid columns of the slit interior, ordered by x
    upper_lip: np.ndarray  # [n] upper-lip slit vertex ids, ordered by x
    lower_lip: np.ndarray  # [n] matching lower-lip ids
    corners: np.ndarray  # [2] mouth-corner ids (right side -x first)
    cavity_depth: np.ndarray  # [V] depth behind the lips for cavity vertices, 0 elsewhere
    closed_lid: tuple[np.ndarray, np.ndarray]  # [V,3] vertex positions with the left / right lid closed
    eye_centres: np.ndarray  # [2,3] left, right


def _grid_faces(ids: np.ndarray, wrap: bool = True) -> list[np.ndarray]:
    """Two outward triangles per quad of a [R,C] id grid (rows top->bottom, columns increasing azimuth)."""
    a = ids[:-1]
    b = ids[1:]
    a2 = np.roll(a, -1, axis=1) if wrap else a[:, 1:]
    b2 = np.roll(b, -1, axis=1) if wrap else b[:, 1:]
    a1, b1 = (a, b) if wrap else (a[:, :-1], b[:, :-1])
    return [np.stack([a1, b1, a2], -1).reshape(-1, 3), np.stack([a2, b1, b2], -1).reshape(-1, 3)]


def _eyeball(centre: np.ndarray, n_lat: int = 9, n_lon: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """UV sphere with its pole looking forward (+z) and a slight corneal bulge; returns (verts, faces)."""
    theta = np.linspace(0, np.pi, n_lat + 1)[1:-1]  # from the front pole
    phi = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    ct, st = np.cos(theta)[:, None], np.sin(theta)[:, None]
    r = geo.EYE_R * (1.0 + 0.07 * np.clip((np.cos(theta) - 0.72) / 0.28, 0, 1) ** 2)[:, None]
    ring = np.stack([r * st * np.cos(phi), r * st * np.sin(phi), r * ct * np.ones_like(phi)], -1).reshape(
        -1, 3
    )
    front = np.array([[0, 0, geo.EYE_R * 1.07]])
    back = np.array([[0, 0, -geo.EYE_R]])
    verts = np.concatenate([front, ring, back]) + centre
    ids = 1 + np.arange(len(theta) * n_lon).reshape(len(theta), n_lon)
    faces = _grid_faces(ids)
    nxt = np.roll(ids[0], -1)
    faces.append(np.stack([np.zeros(n_lon, int), ids[0], nxt], -1))
    last = len(verts) - 1
    faces.append(np.stack([np.full(n_lon, last), np.roll(ids[-1], -1), ids[-1]], -1))
    f = np.concatenate(faces)
    # orient outward (the ring is parameterised around z, so fix winding by a normal test)
    v = verts - centre
    tri = v[f]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = (n * tri.mean(1)).sum(-1) < 0
    f[flip] = f[flip][:, ::-1]
    return verts, f


def _cavity(vert: np.ndarray, upper: np.ndarray, lower: np.ndarray, corners: np.ndarray, start: int):
    """Mouth pouch hung from the slit: a roof sloping gently down-back from the upper lip (its faces look down, so
    a light from above leaves it dark), a floor sloping more steeply from the lower lip, side walls and a back wall.
    """
    depths = np.array([0.003, 0.009, 0.018, 0.032, 0.05, 0.07, 0.088])
    rim_up = np.concatenate([[corners[0]], upper, [corners[1]]])
    rim_lo = np.concatenate([[corners[0]], lower, [corners[1]]])
    new, part, side, depth = [], [], [], []
    rows = {}
    for name, rim, slope, lab in (("roof", rim_up, 0.24, ROOF), ("floor", rim_lo, 0.36, FLOOR)):
        ids = [rim]
        for d in depths:
            p = vert[rim].copy()
            widen = (
                1.0
                + 0.35 * np.sin(np.clip(d / 0.05, 0, 1) * np.pi / 2)
                - 0.75 * np.clip((d - 0.05) / 0.04, 0, 1)
            )
            p[:, 0] *= widen
            p[:, 1] -= d * slope + 0.0
            p[:, 2] -= d
            ids.append(start + len(new) + np.arange(len(p)))
            new.extend(p)
            part += [lab] * len(p)
            side += [1 if lab == ROOF else -1] * len(p)
            depth += [d] * len(p)
        rows[name] = np.stack(ids)  # [K+1, n+2]
    roof, floor = rows["roof"], rows["floor"]
    allv = np.concatenate([vert, np.asarray(new)])
    # each strip is a consistent grid; orient it as a whole by the direction its normals must face
    groups = [
        (_grid_faces(roof, wrap=False), np.array([0.0, -1.0, 0.0])),  # roof looks down into the mouth
        (_grid_faces(floor, wrap=False), np.array([0.0, 1.0, 0.0])),  # floor looks up
        (_grid_faces(np.stack([roof[:, 0], floor[:, 0]], 1), wrap=False), np.array([1.0, 0.0, 0.0])),
        (_grid_faces(np.stack([roof[:, -1], floor[:, -1]], 1), wrap=False), np.array([-1.0, 0.0, 0.0])),
        (_grid_faces(np.stack([roof[-1], floor[-1]]), wrap=False), np.array([0.0, 0.0, 1.0])),  # back wall
    ]
    faces = []
    for tris, want in groups:
        f = np.concatenate(tris)
        f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
        t = allv[f]
        n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
        if (n @ want).sum() < 0:
            f = f[:, ::-1]
        faces.append(f)
    f = np.concatenate(faces)
    return np.asarray(new), f, np.asarray(part), np.asarray(side), np.asarray(depth)


def _descending_lid(grid: np.ndarray, open_v: np.ndarray, closed_v: np.ndarray) -> np.ndarray:
    """Closed-lid targets in which the upper lid slides down over the eye.

    ``closed_v`` holds, on each grid ray, the surface of the head with that eye's slot filled. Moving every vertex
    along its own ray would make a partial blink look like skin rising out of the socket; instead, within each grid
    column through the fissure, rows are re-assigned along the closed surface: the upper-lid margin lands a third
    of the way above the lower margin, the folded slot rows squeeze below it, the lid skin above stretches. The
    straight path of the margin then stays just outside the eyeball (the lid shell is 1 mm above it).
    """
    out = closed_v.copy()
    deep = np.linalg.norm(closed_v[grid] - open_v[grid], axis=-1) > 0.001  # [R,C] rows inside the slot
    for j in np.nonzero(deep.any(0))[0]:
        rows = np.nonzero(deep[:, j])[0]
        i_u, i_l = rows.min() - 1, rows.max() + 1
        i_top = max(i_u - 5, 0)
        close_at = i_l - 0.3 * (i_l - i_u)
        src = np.arange(i_top, i_l + 1, dtype=float)
        param = np.interp(src, [i_top, i_u, i_l], [i_top, close_at, i_l])
        curve = closed_v[grid[:, j]]
        lo = np.floor(param).astype(int)
        frac = (param - lo)[:, None]
        hi = np.minimum(lo + 1, len(curve) - 1)
        out[grid[i_top : i_l + 1, j]] = curve[lo] * (1 - frac) + curve[hi] * frac
    return out


def build_mesh() -> MeshParts:
    rays = geo.ray_rows()
    u = geo.columns()
    dirs = geo.ray_dirs(u, rays.elevations)  # [R,C,3]
    n_r, n_c = dirs.shape[:2]
    org = np.broadcast_to(rays.origins[:, None], dirs.shape).reshape(-1, 3)
    d = dirs.reshape(-1, 3)
    t = geo.cast(org, d, geo.head_sdf)
    pts = org + d * t[:, None]
    top = geo.cast(np.array([[0, geo.Y_BAND_TOP, geo.AXIS_Z]]), np.array([[0.0, 1.0, 0.0]]), geo.head_sdf)
    bot_o = np.array([[0, geo.Y_BAND_BOTTOM + 0.012, -0.014]])
    bot = geo.cast(bot_o, np.array([[0.0, -1.0, 0.0]]), geo.head_sdf, t0=0.001)
    top_p = np.array([[0, geo.Y_BAND_TOP + top[0], geo.AXIS_Z]])
    bot_p = bot_o + np.array([[0, -bot[0], 0]])
    verts = [top_p, pts, bot_p]
    grid = 1 + np.arange(n_r * n_c).reshape(n_r, n_c)
    n_grid = 2 + n_r * n_c
    faces = _grid_faces(grid)
    faces.append(np.stack([np.zeros(n_c, int), grid[0], np.roll(grid[0], -1)], -1))
    faces.append(np.stack([np.full(n_c, n_grid - 1), np.roll(grid[-1], -1), grid[-1]], -1))
    vert = np.concatenate(verts)
    faces = np.concatenate(faces)
    # orient the skin outward from the head centre
    tri = vert[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    if (n * (tri.mean(1) - np.array([0, -0.03, -0.01]))).sum() < 0:
        faces = faces[:, ::-1].copy()

    # closed-lid variants (only rays near an eye change)
    closed = []
    eye_c = np.array([[geo.EYE_X, geo.EYE_Y, geo.EYE_Z], [-geo.EYE_X, geo.EYE_Y, geo.EYE_Z]])
    for k in range(2):
        near = np.linalg.norm(pts - eye_c[k], axis=1) < 0.035
        sdf = partial(geo.head_sdf, open_eyes=(k != 0, k != 1))
        tk = geo.cast(org[near], d[near], sdf)
        pk = vert.copy()
        pk[1 + np.nonzero(near)[0]] = org[near] + d[near] * tk[:, None]
        closed.append(_descending_lid(grid, vert, pk))

    # ---- mouth slit: duplicate the interior of the mouth row; faces below use the lower copies ----
    band_start = int(np.argmax(rays.elevations == 0))
    mrow = band_start + int(np.argmin(np.abs(geo.band_rows() - geo.Y_MOUTH)))
    row_pts = vert[grid[mrow]]
    front = row_pts[:, 2] > 0.03
    interior = np.nonzero(front & (np.abs(row_pts[:, 0]) < geo.MOUTH_HALF_WIDTH))[0]
    interior = interior[np.argsort(row_pts[interior, 0])]
    upper = grid[mrow, interior]
    lower = len(vert) + np.arange(len(interior))
    lut = np.arange(len(vert) + len(interior))
    lut_low = lut.copy()
    lut_low[upper] = lower
    below_rows = (np.isin(faces, grid[mrow + 1]).any(1)) & np.isin(faces, upper).any(1)
    faces[below_rows] = lut_low[faces[below_rows]]
    corner_cols = [interior[0] - 1, interior[-1] + 1]
    corners = grid[mrow, corner_cols]
    vert = np.concatenate([vert, vert[upper]])
    closed = [np.concatenate([c, c[upper]]) for c in closed]
    n_skin = len(vert)
    part = np.zeros(n_skin, int)
    side = np.zeros(n_skin, int)
    side[upper] = 1
    side[lower] = -1

    cav_v, cav_f, cav_part, cav_side, cav_depth = _cavity(vert, upper, lower, corners, n_skin)
    vert = np.concatenate([vert, cav_v])
    faces = np.concatenate([faces, cav_f])
    part = np.concatenate([part, cav_part])
    side = np.concatenate([side, cav_side])
    depth = np.concatenate([np.zeros(n_skin), cav_depth])
    closed = [np.concatenate([c, cav_v]) for c in closed]

    for k, lab in ((0, EYE_L), (1, EYE_R)):
        ev, ef = _eyeball(eye_c[k])
        faces = np.concatenate([faces, ef + len(vert)])
        vert = np.concatenate([vert, ev])
        closed = [np.concatenate([c, ev]) for c in closed]
        part = np.concatenate([part, np.full(len(ev), lab)])
        side = np.concatenate([side, np.zeros(len(ev), int)])
        depth = np.concatenate([depth, np.zeros(len(ev))])
    return MeshParts(
        vertices=vert,
        faces=faces.astype(np.int64),
        part=part,
        side=side,
        grid=grid,
        mouth_row=mrow,
        slit_cols=interior,
        upper_lip=upper,
        lower_lip=lower,
        corners=corners,
        cavity_depth=depth,
        closed_lid=(closed[0], closed[1]),
        eye_centres=eye_c,
    )
