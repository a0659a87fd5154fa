"""Geometry of the procedural face: an implicit (signed-distance) head sampled by rays into a quad grid.

The head is a smooth union of ellipsoids (cranium, mid-face, jaw, chin, cheekbones, brow ridge, nose, lips, ears,
neck) with eye sockets carved out and eyelid shells added. A grid of rays samples it: horizontal rays from points on
a vertical axis for the face band (so every grid row is a horizontal slice: the mouth line is one exact row), and
rays fanning from fixed points for the skull cap and the neck stump. The first exit of each ray from the solid is a
vertex, so the surface is one closed grid with a pole at the top and bottom. The mouth row is then cut into an upper
and a lower lip row, a mouth cavity pouch is hung from the cut, and two eyeball spheres are added.

Units are metres; y up, +z out of the face, +x toward the subject's left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ---- layout of the neutral face (metres) ---------------------------------------------------------------------
Y_MOUTH = -0.062  # mouth line (one exact grid row)
MOUTH_HALF_WIDTH = 0.0245
EYE_X, EYE_Y, EYE_Z = 0.032, 0.0, 0.0655  # left eyeball centre is (+EYE_X, EYE_Y, EYE_Z)
EYE_R = 0.0118
LID_R = EYE_R + 0.0011  # eyelid shell radius: the lid slides over the eye with a ~1 mm gap
AXIS_Z = -0.01  # z of the vertical axis the face-band rays start from
Y_BAND_TOP, Y_BAND_BOTTOM = 0.040, -0.186
NECK_BOTTOM = -0.195
JAW_PIVOT = np.array([0.0, -0.021, 0.004])  # temporomandibular axis (x = 0 after left/right averaging)


def _rot(rx: float = 0.0, rz: float = 0.0, ry: float = 0.0) -> np.ndarray:
    cx, sx, cz, sz, cy, sy = np.cos(rx), np.sin(rx), np.cos(rz), np.sin(rz), np.cos(ry), np.sin(ry)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return my @ mz @ mx


def ellipsoid(
    p: np.ndarray,
    c: tuple[float, ...],
    r: tuple[float, ...],
    rx: float = 0.0,
    rz: float = 0.0,
    ry: float = 0.0,
):
    """Approximate signed distance to an ellipsoid (exact sign; good distance near the surface)."""
    q = p - np.asarray(c)
    if rx or rz or ry:
        q = q @ _rot(rx, rz, ry)  # rotate the point into the ellipsoid frame (R^T q for row vectors)
    r = np.asarray(r)
    k0 = np.linalg.norm(q / r, axis=-1)
    k1 = np.linalg.norm(q / (r * r), axis=-1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth union: blends the two surfaces over a band of width ~k."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    return -smin(-a, -b, k)


def round_cone(p: np.ndarray, a, b, ra: float, rb: float) -> np.ndarray:
    """Approximate distance to a capsule whose radius goes linearly from ``ra`` at ``a`` to ``rb`` at ``b``."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1) - (ra + (rb - ra) * t)


def lip(p: np.ndarray, c, r, taper: float) -> np.ndarray:
    """Ellipsoid whose height and depth shrink toward its ends (a lip: full in the middle, thin at the corners)."""
    q = p - np.asarray(c, float)
    u = np.clip(q[..., 0] / r[0], -1.0, 1.0) ** 2
    ry = r[1] * np.maximum(1.0 - taper * u, 0.25)
    rz = r[2] * np.maximum(1.0 - 0.45 * taper * u, 0.4)
    rr = np.stack(np.broadcast_arrays(np.full_like(ry, r[0]), ry, rz), -1)
    k0 = np.linalg.norm(q / rr, axis=-1)
    k1 = np.linalg.norm(q / (rr * rr), axis=-1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def _neck(p: np.ndarray) -> np.ndarray:
    q = np.stack([p[..., 0] / 0.051, (p[..., 2] + 0.014) / 0.054], -1)
    side = (np.linalg.norm(q, axis=-1) - 1.0) * 0.051
    return np.maximum(np.maximum(side, p[..., 1] + 0.02), NECK_BOTTOM - p[..., 1])


def head_sdf(p: np.ndarray, open_eyes: tuple[bool, bool] = (True, True)) -> np.ndarray:
    """Signed distance (negative inside) of the neutral head at points ``p [...,3]``.

    Args:
        p: query points.
        open_eyes: (left, right); False replaces that eye's palpebral slot by a closed lid (used for blinks).
    """
    d = ellipsoid(p, (0, 0.027, -0.015), (0.0765, 0.095, 0.101))  # cranium
    d = smin(d, ellipsoid(p, (0, -0.028, 0.028), (0.060, 0.050, 0.062)), 0.02)  # maxilla / mid-face
    d = smin(d, ellipsoid(p, (0, -0.060, 0.010), (0.053, 0.046, 0.073)), 0.02)  # jaw
    d = smin(d, ellipsoid(p, (0, -0.091, 0.066), (0.021, 0.016, 0.021)), 0.012)  # chin
    d = smin(d, _neck(p), 0.03)
    for s in (1.0, -1.0):
        d = smin(d, ellipsoid(p, (s * 0.046, -0.008, 0.052), (0.021, 0.015, 0.026)), 0.016)  # cheekbone
        d = smin(
            d, ellipsoid(p, (s * 0.072, -0.012, -0.016), (0.012, 0.030, 0.017), rz=-s * 0.12), 0.006
        )  # ear
        # brow ridge, turned about y so that its outer end follows the forehead back toward the temple
        d = smin(
            d,
            ellipsoid(p, (s * 0.028, 0.0235, 0.0765), (0.025, 0.0095, 0.0095), rz=s * 0.1, ry=s * 0.45),
            0.016,
        )
    d = smin(d, ellipsoid(p, (0, 0.022, 0.078), (0.016, 0.010, 0.012)), 0.01)  # glabella
    for s, is_open in ((1.0, open_eyes[0]), (-1.0, open_eyes[1])):
        c = (s * EYE_X, EYE_Y, EYE_Z)
        # orbit: a shallow, smooth hollow; the lid shell then blends out of it
        d = smax(d, -ellipsoid(p, (s * EYE_X, 0.003, EYE_Z + 0.017), (0.020, 0.016, 0.012)), 0.008)
        lid = np.linalg.norm(p - np.asarray(c), axis=-1) - LID_R
        if is_open:  # palpebral fissure: an almond slot through the lid shell, outer corner a little higher
            lid = smax(
                lid,
                -ellipsoid(p, (s * EYE_X, 0.0012, EYE_Z + 0.012), (0.0138, 0.0053, 0.012), rz=s * 0.07),
                0.0012,
            )
        d = smin(d, lid, 0.005)
    # nose: a ridge widening toward the tip, the tip, the columella and the alae, blended broadly into the face
    d = smin(d, round_cone(p, (0, 0.011, 0.084), (0, -0.025, 0.1025), 0.0052, 0.0078), 0.012)
    d = smin(d, ellipsoid(p, (0, -0.0285, 0.1035), (0.0098, 0.0090, 0.0095)), 0.007)
    d = smin(d, ellipsoid(p, (0, -0.0355, 0.0985), (0.0055, 0.0045, 0.0095)), 0.006)
    for s in (1.0, -1.0):
        d = smin(d, ellipsoid(p, (s * 0.0118, -0.0338, 0.0912), (0.0080, 0.0068, 0.0088)), 0.008)
    # lips: hard union keeps a crease exactly at the mouth line, then a broad blend into the face
    upper = lip(p, (0, Y_MOUTH + 0.0047, 0.0845), (0.0265, 0.0066, 0.0105), taper=0.75)
    lower = lip(p, (0, Y_MOUTH - 0.0060, 0.0818), (0.0245, 0.0080, 0.0108), taper=0.8)
    d = smin(d, np.minimum(upper, lower), 0.009)
    return d


# ---- ray grid -------------------------------------------------------------------------------------------------
def _spaced(segments: list[tuple[float, float, float]]) -> list[float]:
    """Values from each segment's start toward its end with (approximately) the given spacing."""
    out: list[float] = []
    for a, b, step in segments:
        n = max(1, int(round(abs(b - a) / step)))
        out.extend(np.linspace(a, b, n, endpoint=False).tolist())
    return out


def band_rows() -> np.ndarray:
    """Heights of the horizontal face-band rows, top to bottom; one row is exactly at Y_MOUTH."""
    above = _spaced(
        [
            (Y_BAND_TOP, 0.013, 0.0036),
            (0.013, -0.011, 0.0019),
            (-0.011, -0.046, 0.0031),
            (-0.046, Y_MOUTH, 0.0019),
        ]
    )
    below = _spaced([(Y_MOUTH, -0.079, 0.0019), (-0.079, -0.116, 0.0031), (-0.116, Y_BAND_BOTTOM, 0.0105)])
    return np.array(above + below + [Y_BAND_BOTTOM])


def columns(n: int = 56) -> np.ndarray:
    """Azimuths (radians, 0 = front, +pi/2 = subject's left) dense on the face, sparse at the back."""
    grid = np.linspace(-np.pi, np.pi, 4001)
    dens = 1.0 + 5.2 * np.exp(-((grid / 0.62) ** 4)) + 1.2 * np.exp(-((grid / 1.25) ** 4))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    u = np.interp((np.arange(n) + 0.5) / n, cdf, grid)
    return u - 0.5 * (u[n // 2] + u[n // 2 - 1])  # symmetric about the front (two columns straddle u = 0)


@dataclass(frozen=True)
class RaySet:
    origins: np.ndarray  # [R,3] one origin per row
    elevations: np.ndarray  # [R] radians (0 = horizontal)


def ray_rows() -> RaySet:
    top = np.radians(90.0 * (np.arange(1, 10) / 10.0) ** 1.35)[::-1]  # skull cap, pole excluded
    band = band_rows()
    bottom = np.radians(-np.array([28.0, 60.0]))
    origins = np.zeros((len(top) + len(band) + len(bottom), 3))
    origins[:, 2] = AXIS_Z
    origins[: len(top), 1] = Y_BAND_TOP
    origins[len(top) : len(top) + len(band), 1] = band
    origins[len(top) + len(band) :, 1] = Y_BAND_BOTTOM + 0.012
    origins[len(top) + len(band) :, 2] = -0.014
    elev = np.concatenate([top, np.zeros(len(band)), bottom])
    return RaySet(origins, elev)


def cast(
    origins: np.ndarray, dirs: np.ndarray, sdf, t0: float = 0.02, t1: float = 0.26, step: float = 0.0015
) -> np.ndarray:
    """First exit distance of each ray from the solid ``sdf < 0`` (linear march + bisection)."""
    ts = np.arange(t0, t1, step)
    inside_prev = np.ones(len(origins), bool)
    hit = np.full(len(origins), np.nan)
    lo = np.zeros(len(origins))
    for t in ts:
        val = sdf(origins + dirs * t)
        new = np.isnan(hit) & (val > 0) & inside_prev
        hit[new] = t
        lo[new] = t - step
        inside_prev = val <= 0
        if not np.isnan(hit).any():
            break
    if np.isnan(hit).any():
        raise RuntimeError(
            "procedural face: some rays never left the head; geometry constants are inconsistent"
        )
    a, b = lo, hit
    for _ in range(22):
        mid = 0.5 * (a + b)
        out = sdf(origins + dirs * mid[:, None]) > 0
        b = np.where(out, mid, b)
        a = np.where(out, a, mid)
    return 0.5 * (a + b)


def ray_dirs(u: np.ndarray, elev: np.ndarray) -> np.ndarray:
    ce = np.cos(elev)[:, None]
    return np.stack(
        [
            ce * np.sin(u)[None],
            np.broadcast_to(np.sin(elev)[:, None], (len(elev), len(u))),
            ce * np.cos(u)[None],
        ],
        -1,
    )
