"""The painted look of the procedural head for synthetic videos: per-vertex albedo (skin, lips, mouth, eyes, brows,
nostrils, hair), varied per seed, so that MediaPipe's face detector and landmarker fire on its renders."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from render.shading import vertex_normals

__all__ = ["procedural_albedo"]

_SKIN_LIGHT = np.array([0.90, 0.71, 0.60])
_SKIN_DARK = np.array([0.52, 0.35, 0.25])
_IRIS = np.array([[0.30, 0.18, 0.10], [0.38, 0.27, 0.14], [0.28, 0.40, 0.55], [0.30, 0.38, 0.25]])
_HAIR = np.array([[0.10, 0.07, 0.05], [0.22, 0.14, 0.08], [0.35, 0.24, 0.14], [0.05, 0.05, 0.05]])


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _mix(color: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per-vertex blend of ``color [V,3]`` toward ``target [3] or [V,3]`` by ``weight [V]`` in [0,1]."""
    return color + weight[:, None] * (target - color)


def procedural_albedo(seed: int = 0) -> np.ndarray:
    """Per-vertex albedo of the procedural head (``motion.face.procedural``), skin-like and varied per seed.

    Skin of a seeded tone with low-frequency blotches and fine per-vertex noise, redder cheeks and lips, a dark
    mouth interior, white eyeballs with a dark iris and pupil where they face forward (+z), eyebrows (an arched
    band above each ``eye_region``), darker nostrils and lid margins, and hair on the ``scalp``.

    Args:
        seed: random seed (skin tone, iris and hair colour, blotches, noise).

    Returns:
        ``[V,3]`` float32 in [0,1] (V = 4948), a fresh copy.
    """
    return _albedo(int(seed)).copy()


@lru_cache(maxsize=8)
def _albedo(seed: int) -> np.ndarray:
    from motion.face.procedural.face import build_procedural_face

    face = build_procedural_face()
    v = np.asarray(face.model["v_template"], np.float64)
    masks = face.masks
    x, y, z = v.T
    n_v = len(v)
    rng = np.random.default_rng(int(seed))
    isin = {k: np.isin(np.arange(n_v), ids) for k, ids in masks.items()}
    ball_or_mouth = isin["left_eyeball"] | isin["right_eyeball"] | isin["mouth_interior"]

    skin = _SKIN_LIGHT + rng.uniform(0.0, 0.75) * (_SKIN_DARK - _SKIN_LIGHT)
    color = np.broadcast_to(skin, (n_v, 3)).copy()
    # low-frequency blotches: a few Gaussian bumps of brightness and redness over the surface
    shade = np.zeros(n_v)
    red = np.zeros(n_v)
    for _ in range(12):
        centre = v[rng.integers(n_v)]
        blob = np.exp(-((v - centre) ** 2).sum(1) / (2.0 * rng.uniform(0.012, 0.03) ** 2))
        shade += rng.normal(0.0, 0.05) * blob
        red += rng.normal(0.0, 0.03) * blob
    color *= (1.0 + shade)[:, None]
    color[:, 0] += red
    # cheeks a little redder
    for s in (1.0, -1.0):
        cheek = np.exp(-((x - s * 0.042) ** 2 + (y + 0.03) ** 2) / (2.0 * 0.014**2)) * (z > 0.03)
        color = _mix(color, skin * np.array([1.02, 0.80, 0.78]), 0.45 * cheek)

    # lips: an ellipse per lip around the mouth line (the edges' height), redder and darker than the skin
    mouth_y = float(v[masks["lip_upper_edge"], 1].mean())
    half_w = float(np.abs(v[masks["lip_upper_edge"], 0]).max()) + 0.004
    upper = (x / half_w) ** 2 + ((y - mouth_y - 0.0045) / 0.0072) ** 2
    lower = (x / (half_w * 0.95)) ** 2 + ((y - mouth_y + 0.0060) / 0.0088) ** 2
    lip_w = (1.0 - _smoothstep(0.7, 1.15, np.minimum(upper, lower))) * isin["lips"]
    color = _mix(color, skin * np.array([0.85, 0.50, 0.52]), lip_w)
    # the mouth interior gets darker with depth into the cavity
    inner = isin["mouth_interior"]
    depth = np.clip((v[:, 2].max() - z) / 0.04, 0.0, 1.0)
    color[inner] = np.array([0.35, 0.12, 0.12]) * (1.0 - 0.6 * depth[inner, None])

    # eyes: white, iris and pupil facing +z; a darker lid margin and an arched brow above each eye region
    iris = _IRIS[rng.integers(len(_IRIS))]
    for side in ("left", "right"):
        ball = masks[f"{side}_eyeball"]
        centre = v[ball].mean(0)
        d = v[ball] - centre
        cos = d[:, 2] / np.linalg.norm(d, axis=1)
        eye = np.broadcast_to(np.array([0.93, 0.91, 0.88]), (len(ball), 3)).copy()
        eye = _mix(eye, iris, _smoothstep(np.cos(np.radians(32)), 0.93, cos))
        color[ball] = _mix(eye, np.array([0.04, 0.03, 0.03]), _smoothstep(0.97, 0.999, cos))
        radius = float(np.linalg.norm(d, axis=1).max())
        dist = np.linalg.norm(v - centre, axis=1)
        margin = isin[f"{side}_eye_region"] & (dist < radius + 0.002) & (z > centre[2]) & (np.abs(y) < 0.008)
        color[margin] *= 0.55
        region = v[masks[f"{side}_eye_region"]]
        cx, top = float(region[:, 0].mean()), float(region[:, 1].max())
        half = 0.5 * float(np.ptp(region[:, 0]))
        u = (x - cx) / half  # -1 .. 1 across the eye region
        arch = top + 0.0005 + 0.004 * (1.0 - u**2)  # brow centre line
        thick = 0.0055 * (1.0 - 0.5 * _smoothstep(0.0, 1.0, np.abs(u)))
        brow = (1.0 - _smoothstep(0.7, 1.0, np.abs(u))) * (
            1.0 - _smoothstep(0.5, 1.0, np.abs(y - arch) / thick)
        )
        brow *= (z > 0.04) & ~ball_or_mouth
        color = _mix(color, skin * 0.35, 0.9 * brow)

    # nostrils: downward-facing nose vertices beside the columella
    normals = vertex_normals(
        torch.as_tensor(v[None], dtype=torch.float32),
        torch.as_tensor(np.asarray(face.model["f"], np.int64)),
    )[0].numpy()
    nostril = isin["nose"] & (normals[:, 1] < -0.4) & (np.abs(x) > 0.003) & (np.abs(x) < 0.011) & (y < -0.033)
    color[nostril] *= 0.45

    # hair: the scalp, with a soft hairline and streaky noise
    hair = _HAIR[rng.integers(len(_HAIR))]
    scalp = isin["scalp"].astype(np.float64)
    front = (z > 0.0) & (y > 0.06)
    scalp = np.where(front, scalp * _smoothstep(0.07, 0.085, y), scalp)
    streak = 1.0 + 0.25 * np.sin(x * 900.0 + rng.uniform(0, 6.3)) * np.sin(z * 700.0 + y * 300.0)
    color = _mix(color, np.clip(hair * streak[:, None], 0, 1), scalp)

    # fine per-vertex noise everywhere (pores, texture)
    color *= 1.0 + rng.normal(0.0, 0.025, (n_v, 1))
    color += rng.normal(0.0, 0.008, (n_v, 3))
    return np.clip(color, 0.0, 1.0).astype(np.float32)
