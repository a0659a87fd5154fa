"""MediaPipe FaceMesh landmark embeddings: where each of the detector's 468 points lies on a face mesh.

An embedding is, per landmark, a triangle of the mesh and barycentric coordinates inside it (FLAME's
``mediapipe_landmark_embedding.npz`` format: ``lmk_face_idx``, ``lmk_b_coords``, ``landmark_indices``). FLAME ships
one for 105 of the 468 points; the procedural head's (``motion/face/procedural/mediapipe_embedding.npz``) is
built here, by :func:`build_procedural_embedding`:

    from talk.track.embedding import build_procedural_embedding, save_embedding
    save_embedding("mediapipe_embedding.npz", build_procedural_embedding())

Each view renders the template (skin-coloured, on blue, rotated by a few degrees and framed at a few scales),
runs :func:`~talk.track.detect.detect_landmarks`, and casts the camera ray through every detected (x, y) onto the
triangle the rasterizer saw at that pixel (:func:`backproject`). Every view thus proposes a surface point per
landmark; the proposal kept is the one whose reprojection error, summed over all views, is smallest, which
averages out the detector's per-view jitter while staying exactly on the surface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from render import Camera, TorchRasterizer, fit_camera, to_uint8

__all__ = ["Embedding", "backproject", "build_procedural_embedding", "save_embedding", "surface_points"]

SKIN = (0.85, 0.65, 0.55)
BACKGROUND = (0.3, 0.4, 0.6)
# (yaw, pitch) degrees and camera margin of the views; the first is the plain frontal render.
DEFAULT_VIEWS: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 1.6),
    (8.0, 0.0, 1.6),
    (-8.0, 0.0, 1.6),
    (0.0, 6.0, 1.6),
    (0.0, -6.0, 1.6),
    (0.0, 0.0, 1.35),
    (0.0, 0.0, 1.9),
)


@dataclass(frozen=True)
class Embedding:
    """Landmarks as points on a mesh surface.

    Attributes:
        lmk_face_idx: [L] int64 triangle per landmark.
        lmk_b_coords: [L, 3] float64 barycentric coordinates in that triangle (non-negative, summing to 1).
        landmark_indices: [L] int64 FaceMesh index (0-467) of each landmark.
        source: How the embedding was made.
        reprojection_px: [L] mean reprojection error over the views it was built from, in pixels (NaN if unknown).
    """

    lmk_face_idx: np.ndarray
    lmk_b_coords: np.ndarray
    landmark_indices: np.ndarray
    source: str
    reprojection_px: np.ndarray


def surface_points(vertices: Tensor, faces: Tensor, face_idx: Tensor, bary: Tensor) -> Tensor:
    """Points of an embedding on a posed mesh: ``vertices [..., V, 3]`` -> ``[..., L, 3]``."""
    tri = vertices[..., faces[face_idx], :]  # [..., L, 3, 3]
    return (tri * bary.to(vertices.dtype)[:, :, None]).sum(-2)


def backproject(
    points: np.ndarray, vertices: Tensor, faces: Tensor, camera: Camera, face_ids: Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Surface points under image points: triangle and exact barycentrics of each camera ray's hit.

    A point whose pixel is empty (a contour landmark just outside the silhouette) takes the nearest covered
    pixel's triangle; a ray that misses its triangle by a fraction of a pixel is clamped onto it.

    Args:
        points: [L, 2] (x, y) image pixels.
        vertices: [V, 3] the mesh as rendered.
        faces: [F, 3] long.
        camera: The perspective camera of the render (batch 1, principal point default or given).
        face_ids: [H, W] visible triangle per pixel, -1 where empty.

    Returns:
        ``(face_idx [L] int64, bary [L, 3] float64)``.
    """
    ids = face_ids.numpy()
    h, w = ids.shape
    covered = np.argwhere(ids >= 0)  # [P, 2] (row, col)
    px = np.clip(np.floor(points).astype(np.int64), 0, [w - 1, h - 1])
    fidx = ids[px[:, 1], px[:, 0]].copy()
    for i in np.nonzero(fidx < 0)[0]:
        near = covered[np.argmin(((covered + 0.5 - points[i, ::-1]) ** 2).sum(1))]
        fidx[i] = ids[near[0], near[1]]
    R = camera.R[0].double().numpy()
    T = camera.T[0].double().numpy()
    cx, cy = camera.center
    f = float(camera.focal_tensor(torch.float64).reshape(-1)[0])
    # Ray in camera space through (u, v): direction (x/d, y/d, -1); origin at the camera centre.
    dirs_cam = np.stack([(points[:, 0] - cx) / f, -(points[:, 1] - cy) / f, -np.ones(len(points))], 1)
    tri = vertices.double().numpy()[faces.numpy()[fidx]] @ R.T + T  # [L, 3, 3] camera space
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    # Solve o + t d = a + b1 e1 + b2 e2 with o = 0 (Cramer / Moeller-Trumbore).
    p = np.cross(dirs_cam, e2)
    det = (e1 * p).sum(1)
    s = -tri[:, 0]
    b1 = (s * p).sum(1) / det
    q = np.cross(s, e1)
    b2 = (dirs_cam * q).sum(1) / det
    bary = np.clip(np.stack([1 - b1 - b2, b1, b2], 1), 0.0, None)
    return fidx.astype(np.int64), bary / bary.sum(1, keepdims=True)


def _rotation(yaw_deg: float, pitch_deg: float) -> Tensor:
    """Rotation [3, 3] of the head: yaw about y, then pitch about x."""
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = torch.tensor([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = torch.tensor([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return (rx @ ry).double()


def render_template_view(
    vertices: Tensor,
    faces: Tensor,
    yaw: float = 0.0,
    pitch: float = 0.0,
    margin: float = 1.6,
    size: int = 512,
) -> tuple[np.ndarray, Tensor, Camera, Tensor]:
    """Render the head rotated by (yaw, pitch) degrees, framed by ``fit_camera`` at ``margin``.

    Returns:
        ``(image [H, W, 3] uint8, posed vertices [V, 3], camera, face_ids [H, W])``.
    """
    posed = (vertices.double() @ _rotation(yaw, pitch).T).float()
    camera = fit_camera(posed[None], image_size=(size, size), margin=margin)
    colors = torch.tensor(SKIN).expand(posed.shape[0], 3)
    out = TorchRasterizer(background=BACKGROUND, ambient=0.45).render(
        posed[None], faces, camera, colors=colors
    )
    return to_uint8(out, BACKGROUND)[0], posed, camera, out.face_ids[0]


def build_procedural_embedding(
    vertices: Tensor | None = None,
    faces: Tensor | None = None,
    views: Sequence[tuple[float, float, float]] = DEFAULT_VIEWS,
    size: int = 512,
) -> Embedding:
    """Build the 468-point FaceMesh embedding of a head mesh (by default the procedural template).

    Args:
        vertices: [V, 3] neutral head (metres, facing +z); None = the procedural face's template.
        faces: [F, 3] its triangles (required with ``vertices``).
        views: ``(yaw deg, pitch deg, fit_camera margin)`` per render.
        size: Square render size in pixels.

    Returns:
        The :class:`Embedding` of all 468 landmarks.
    """
    from talk.track.detect import detect_landmarks

    if vertices is None:
        from motion.face.procedural.face import build_procedural_face

        model = build_procedural_face().model
        vertices = torch.as_tensor(model["v_template"], dtype=torch.float32)
        faces = torch.as_tensor(model["f"].astype(np.int64))
    assert faces is not None
    renders, candidates = [], []
    for yaw, pitch, margin in views:
        image, posed, camera, face_ids = render_template_view(vertices, faces, yaw, pitch, margin, size)
        detected = detect_landmarks(image).points[:, :2].astype(np.float64)
        candidates.append(backproject(detected, posed, faces, camera, face_ids))
        renders.append((posed, camera, detected))
    # errors[c, v, l]: reprojection error of view c's proposal for landmark l, seen in view v
    errors = np.zeros((len(views), len(views), len(detected)))
    for c, (fidx, bary) in enumerate(candidates):
        fi, bc = torch.as_tensor(fidx), torch.as_tensor(bary)
        for v, (posed, camera, detected) in enumerate(renders):
            uv = camera.project(surface_points(posed.double(), faces, fi, bc)[None])[0, :, :2].numpy()
            errors[c, v] = np.linalg.norm(uv - detected, axis=1)
    best = errors.mean(1).argmin(0)  # [L]
    rows = np.arange(len(best))
    face_idx = np.stack([c[0] for c in candidates])[best, rows]
    bary = np.stack([c[1] for c in candidates])[best, rows]
    source = (
        "talk.track.embedding.build_procedural_embedding: MediaPipe FaceMesh (0.10.21) on renders of the "
        f"procedural template, views (yaw, pitch, margin) {list(views)}, {size} px; per landmark the view's "
        "back-projection with the least mean reprojection error over all views."
    )
    return Embedding(face_idx, bary, np.arange(len(best), dtype=np.int64), source, errors.mean(1)[best, rows])


def save_embedding(path: str | Path, embedding: Embedding) -> None:
    """Write ``embedding`` as FLAME's ``mediapipe_landmark_embedding.npz`` keys plus ``source``."""
    np.savez(
        path,
        lmk_face_idx=embedding.lmk_face_idx.astype(np.int64),
        lmk_b_coords=embedding.lmk_b_coords.astype(np.float64),
        landmark_indices=embedding.landmark_indices.astype(np.int64),
        source=np.asarray(embedding.source),
    )
