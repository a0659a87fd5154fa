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
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from render import Camera, VideoWriter
from render.textured import render_textured, textured_background
from talk.files import write_atomic
from talk.synth.albedo import procedural_albedo

__all__ = ["HeadMotion", "TalkingVideoTruth", "head_motion", "procedural_albedo", "render_talking_video"]


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
