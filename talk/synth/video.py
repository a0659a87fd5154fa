"""Synthetic talking videos with known ground truth: the procedural head, textured, posed and lit, over a backdrop.

    from talk.synth.video import render_talking_video
    truth = render_talking_video("out/clip.mp4", "wav/SYN_01_F_sentence01.wav",
                                 dict(np.load("flame/SYN_01_F_sentence01.npz")), fps=60,
                                 face_model_path="face_model.pkl")
    truth.landmarks    # [T,468,2] the FaceMesh points of the head, in pixels; truth.truth_path holds them all

Used to check the face tracker on a round trip (render known motion -> mp4 -> ``talk track`` -> compare): the camera
is the tracker's (``talk.track.fit``: a pinhole at the origin looking down -z, ``R = I``, ``T = 0``, focal 1.2
times the image's long side) and the head is placed by FLAME's ``global_pose`` (axis-angle) and ``translation``, so
tracked parameters compare directly with the truth. The albedo (:func:`procedural_albedo`) is painted so that
MediaPipe's face detector and landmarker fire on the renders: skin with blotches and noise, red lips, a dark mouth,
white eyes with a dark iris, eyebrows, nostrils and hair.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from render import Camera, VideoWriter
from render.shading import vertex_normals
from render.textured import render_textured, textured_background
from talk.files import write_atomic

__all__ = ["HeadMotion", "TalkingVideoTruth", "head_motion", "procedural_albedo", "render_talking_video"]

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


# ------------------------------------------------------------------------------------------------ head motion
@dataclass(frozen=True)
class HeadMotion:
    """A rigid head trajectory and a light trajectory, per frame.

    Attributes:
        global_pose: ``[T,3]`` float32 FLAME root rotation, axis-angle (radians).
        translation: ``[T,3]`` float32 FLAME translation (metres, camera space: the camera is at the origin).
        light_direction: ``[T,3]`` float32 unit direction towards the light, camera space.
        euler_deg: ``[T,3]`` float32 ``(yaw, pitch, roll)`` degrees the rotation was built from:
            ``R = Rz(roll) Ry(yaw) Rx(pitch)``; positive yaw turns the face towards +x (the image's right),
            positive pitch tilts it down, positive roll turns it counter-clockwise as seen by the camera.
    """

    global_pose: np.ndarray
    translation: np.ndarray
    light_direction: np.ndarray
    euler_deg: np.ndarray


def _slow_wave(rng: np.random.Generator, t: np.ndarray, amplitude: float, max_hz: float) -> np.ndarray:
    """``[T]`` sum of three slow sinusoids with random frequencies, phases and weights; ``|wave| <= amplitude``."""
    weights = rng.dirichlet(np.ones(3))
    hz = rng.uniform(0.05, max_hz, 3)
    phase = rng.uniform(0.0, 2.0 * np.pi, 3)
    return amplitude * (weights * np.sin(2.0 * np.pi * hz * t[:, None] + phase)).sum(1)


def head_motion(
    n_frames: int,
    fps: float = 30.0,
    seed: int = 0,
    yaw_deg: float = 10.0,
    pitch_deg: float = 6.0,
    roll_deg: float = 4.0,
    drift_m: float = 0.01,
    max_hz: float = 0.4,
    centre: tuple[float, float, float] = (0.0, 0.0, -0.6),
    light_spread_deg: float = 15.0,
) -> HeadMotion:
    """A smooth, seeded head-pose trajectory (sums of slow sinusoids) and a slowly moving light.

    Args:
        n_frames: T.
        fps: frame rate (sets the time axis of the sinusoids).
        seed: random seed; the same seed gives the same arrays.
        yaw_deg: bound of the yaw (rotation about y), degrees.
        pitch_deg: bound of the pitch (about x), degrees.
        roll_deg: bound of the roll (about z), degrees.
        drift_m: bound of the translation drift in x and y (z drifts twice as much), metres.
        max_hz: highest frequency of the sinusoids.
        centre: mean translation (metres, camera space; the head faces the camera from ``-z``).
        light_spread_deg: how far the light wanders around its seeded mean direction, degrees.

    Returns:
        The :class:`HeadMotion`.
    """
    if n_frames <= 0 or not fps > 0:
        raise ValueError(f"head_motion: `n_frames` and `fps` must be positive, got {n_frames} and {fps}.")
    rng = np.random.default_rng(int(seed))
    t = np.arange(int(n_frames)) / float(fps)
    yaw, pitch, roll = (_slow_wave(rng, t, a, max_hz) for a in (yaw_deg, pitch_deg, roll_deg))
    euler = np.stack([yaw, pitch, roll], 1)
    rot = Rotation.from_euler("ZYX", np.radians(np.stack([roll, yaw, pitch], 1)))
    drift = np.stack([_slow_wave(rng, t, a, max_hz) for a in (drift_m, drift_m, 2.0 * drift_m)], 1)
    # light: a seeded mean direction in front of the face, from above, wandering slowly
    az = np.radians(rng.uniform(-30.0, 30.0) + _slow_wave(rng, t, light_spread_deg, 0.2))
    el = np.radians(rng.uniform(10.0, 35.0) + _slow_wave(rng, t, 0.5 * light_spread_deg, 0.2))
    light = np.stack([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)], 1)
    return HeadMotion(
        global_pose=rot.as_rotvec().astype(np.float32),
        translation=(np.asarray(centre, np.float64) + drift).astype(np.float32),
        light_direction=light.astype(np.float32),
        euler_deg=euler.astype(np.float32),
    )


# ------------------------------------------------------------------------------------------------ video + truth
@dataclass(frozen=True, eq=False)
class TalkingVideoTruth:
    """Ground truth of a rendered talking video (also written as ``<video stem>_truth.npz``, same names).

    Attributes:
        video_path: the mp4.
        truth_path: the ``.npz`` beside it.
        expression: ``[T,E]`` FLAME expression coefficients, as given.
        jaw: ``[T,3]`` jaw axis-angle, as given.
        shape: ``[S]`` identity coefficients, as given (zeros if absent).
        global_pose: ``[T,3]`` head rotation, axis-angle.
        translation: ``[T,3]`` metres.
        focal: focal length in pixels (camera ``R = I``, ``T = 0``, principal point at the image centre).
        image_size: ``[2]`` ``(H, W)``.
        fps: frame rate of the video.
        landmarks: ``[T,L,2]`` the model's MediaPipe landmarks projected to ``(x, y)`` pixels.
        landmark_indices: ``[L]`` FaceMesh index of each landmark row (0..467 for the procedural head).
        vertices: ``[T,V,3]`` float32 posed vertices in camera space.
        light_direction: ``[T,3]`` camera-space direction towards the light.
    """

    video_path: Path
    truth_path: Path
    expression: np.ndarray
    jaw: np.ndarray
    shape: np.ndarray
    global_pose: np.ndarray
    translation: np.ndarray
    focal: float
    image_size: np.ndarray
    fps: float
    landmarks: np.ndarray
    landmark_indices: np.ndarray
    vertices: np.ndarray
    light_direction: np.ndarray

    @classmethod
    def load(cls, truth_path: str | Path, video_path: str | Path | None = None) -> TalkingVideoTruth:
        """Read a ``*_truth.npz``; the video defaults to the same stem without ``_truth`` and ``.mp4``."""
        truth_path = Path(truth_path)
        if video_path is None:
            video_path = truth_path.with_name(truth_path.stem.removesuffix("_truth") + ".mp4")
        with np.load(truth_path) as npz:
            arrays = {f.name: npz[f.name] for f in fields(cls) if f.name not in ("video_path", "truth_path")}
        arrays["focal"], arrays["fps"] = float(arrays["focal"]), float(arrays["fps"])
        return cls(video_path=Path(video_path), truth_path=truth_path, **arrays)


def _framing(model, head_fraction: float, focal: float, height: int) -> tuple[float, float]:
    """``(y offset, distance)`` putting the head (crown to the neck joint) at ``head_fraction`` of the height."""
    template = model.v_template.double()
    neck_y = float((model.J_regressor.double() @ template)[1, 1])  # FLAME joint 1: the neck
    top = float(template[:, 1].max())
    distance = focal * (top - neck_y) / (head_fraction * height)
    return -0.5 * (top + neck_y), distance


def render_talking_video(
    out_path: str | Path,
    audio_wav_path: str | Path,
    params: Mapping[str, np.ndarray],
    fps: float,
    face_model_path: str | Path,
    size: int | tuple[int, int] = 256,
    seed: int = 0,
    motion: HeadMotion | None = None,
    head_fraction: float = 0.5,
    focal: float | None = None,
    albedo: np.ndarray | None = None,
    landmark_embedding_path: str | Path | None = None,
    chunk: int = 32,
    crf: int = 18,
) -> TalkingVideoTruth:
    """Render FLAME motion on the textured head over a backdrop, as an H.264/AAC mp4, and write its ground truth.

    Example (one sentence of the synthetic dataset, subsampled from 60 to 30 fps)::

        from talk.synth import synthesize_dataset
        from talk.synth.video import render_talking_video
        synthesize_dataset("syn", speakers=1, sentences=1)
        motion = dict(np.load("syn/flame/SYN_01_F_sentence01.npz"))
        motion = {k: (v[::2] if k != "shape" else v) for k, v in motion.items()}
        truth = render_talking_video("clip.mp4", "syn/wav/SYN_01_F_sentence01.wav", motion, fps=30,
                                     face_model_path="syn/face_model.pkl", size=256, seed=3)
        # clip.mp4 + clip_truth.npz (TalkingVideoTruth.load reads it back)

    The head follows ``motion`` (default :func:`head_motion` of ``seed``, centred so that the head, crown to neck
    joint, spans ``head_fraction`` of the frame height); the camera is the tracker's (``R = I``, ``T = 0``, focal
    ``1.2 * max(H, W)`` by default). Frames are rendered ``chunk`` at a time and streamed to ffmpeg.

    Args:
        out_path: the ``.mp4`` to write; the truth goes to ``<stem>_truth.npz`` beside it.
        audio_wav_path: audio muxed into the video (padded or trimmed to the video's length).
        params: FLAME motion as in the synthetic dataset's ``.npz``: ``expression [T,E]``, ``jaw [T,3]``, optional
            ``shape [S]``.
        fps: frame rate of ``params`` and of the video.
        face_model_path: FLAME-format ``.pkl`` (e.g. the procedural ``face_model.pkl``).
        size: image size, an int (square) or ``(H, W)``.
        seed: seed of the head motion, the light, the albedo and the background.
        motion: explicit head and light trajectory (T frames) instead of the seeded one.
        head_fraction: fraction of the frame height the head spans (sets the default trajectory's distance).
        focal: focal length in pixels; None = ``1.2 * max(H, W)``.
        albedo: ``[V,3]`` vertex colours; None = :func:`procedural_albedo` of ``seed`` (procedural head only).
        landmark_embedding_path: MediaPipe embedding ``.npz`` of the model; None = the procedural head's.
        chunk: frames rendered per step (memory does not grow with the video's length).
        crf: libx264 quality (0 lossless .. 51).

    Returns:
        The :class:`TalkingVideoTruth` (arrays and paths).
    """
    from motion.face.flame import FLAME, FLAMEParams
    from motion.face.flame_io import load_flame_model, load_mediapipe_embedding
    from motion.face.procedural.face import mediapipe_embedding_path

    out_path = Path(out_path)
    height, width = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    expression = np.asarray(params["expression"], np.float32)
    jaw = np.asarray(params["jaw"], np.float32)
    if expression.ndim != 2 or jaw.ndim != 2 or jaw.shape != (len(expression), 3) or not len(jaw):
        raise ValueError(
            f"render_talking_video: `params` needs expression [T,E] and jaw [T,3] with the same T >= 1, got "
            f"{expression.shape} and {jaw.shape}."
        )
    n_frames = len(expression)
    if not 0.0 < head_fraction <= 1.0:
        raise ValueError(f"render_talking_video: `head_fraction` must be in (0, 1], got {head_fraction}.")
    columns = int(np.shape(load_flame_model(str(face_model_path))["shapedirs"])[2])
    n_shape = min(300, columns)  # FLAME files: 300 identity columns, then the expression ones
    embedding = Path(landmark_embedding_path or mediapipe_embedding_path())
    model = FLAME(str(face_model_path), n_shape=n_shape, n_expression=columns - n_shape,
                  landmark_embedding_path=str(embedding)).eval()  # fmt: skip
    shape = np.asarray(params.get("shape", np.zeros(0)), np.float32).reshape(-1)
    if shape.size == 0:
        shape = np.zeros(n_shape, np.float32)
    f = float(focal) if focal is not None else 1.2 * max(height, width)
    if motion is None:
        y_off, distance = _framing(model, head_fraction, f, height)
        motion = head_motion(n_frames, fps, seed, centre=(0.0, y_off, -distance))
    if len(motion.global_pose) != n_frames:
        raise ValueError(
            f"render_talking_video: `motion` has {len(motion.global_pose)} frames, params {n_frames}."
        )
    if albedo is None:
        albedo = procedural_albedo(seed)
    if len(albedo) != model.num_vertices:
        raise ValueError(
            f"render_talking_video: the albedo has {len(albedo)} vertices but {face_model_path} has "
            f"{model.num_vertices}; pass `albedo` for a model other than the procedural head."
        )
    camera = Camera(R=torch.eye(3)[None], T=torch.zeros(1, 3), focal=f, image_size=(height, width))
    background = textured_background((height, width), seed)
    faces = model.faces
    vertices = np.empty((n_frames, model.num_vertices, 3), np.float32)
    landmarks = np.empty((n_frames, int(model.lmk_faces_idx.shape[0]), 2), np.float32)
    shape_t = torch.as_tensor(shape)[None]
    with VideoWriter(out_path, fps, audio=audio_wav_path, crf=crf) as writer, torch.no_grad():
        for start in range(0, n_frames, max(1, int(chunk))):
            sl = slice(start, min(start + max(1, int(chunk)), n_frames))
            out = model(
                FLAMEParams(
                    shape=shape_t,
                    expression=torch.as_tensor(expression[sl])[None],
                    jaw_pose=torch.as_tensor(jaw[sl])[None],
                    global_pose=torch.as_tensor(motion.global_pose[sl])[None],
                    translation=torch.as_tensor(motion.translation[sl])[None],
                )
            )
            verts = out.vertices[0]
            vertices[sl] = verts.numpy()
            landmarks[sl] = camera.project(out.landmarks[0])[..., :2].numpy()
            writer.write(
                render_textured(verts, faces, camera, albedo, background, motion.light_direction[sl])
            )
    truth = TalkingVideoTruth(
        video_path=out_path,
        truth_path=out_path.with_name(out_path.stem + "_truth.npz"),
        expression=expression,
        jaw=jaw,
        shape=shape,
        global_pose=np.asarray(motion.global_pose, np.float32),
        translation=np.asarray(motion.translation, np.float32),
        focal=f,
        image_size=np.array([height, width], np.int64),
        fps=float(fps),
        landmarks=landmarks,
        landmark_indices=load_mediapipe_embedding(embedding)[2],
        vertices=vertices,
        light_direction=np.asarray(motion.light_direction, np.float32),
    )
    arrays = {
        k.name: getattr(truth, k.name) for k in fields(truth) if k.name not in ("video_path", "truth_path")
    }
    write_atomic(truth.truth_path, lambda fh: np.savez(fh, **arrays))
    return truth
