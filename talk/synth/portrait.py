"""Synthetic portrait videos for training the image-space generator: the procedural head, with teeth and a tongue,
speaking synthetic sentences under varied appearance.

    clip = render_portrait_clip(seed=3, n_frames=50)       # PortraitClip: frames [T,H,W,3] uint8 + truth
    write_portrait_set("portraits", clips=200, frames_per_clip=50, seed=0)

Every clip is a new person and a new shot, all drawn from its seed (:func:`draw_style`): skin texture and tone
(:func:`~talk.synth.albedo.procedural_albedo` plus a tint), hair and eyebrow colour, teeth and tongue shade, a
fixed light (direction, ambient, specular, colour), the camera (focal length, distance, the head off centre), a
base head pose with small motion over time (:func:`~talk.synth.video.head_motion`) and a still background. The face
moves with the synthetic speech generator (a random sentence: jaw and lips from its phonemes, plus blinks, brows
and smile drift), so a generator must take appearance from the reference frame and motion from the conditioning.

Frame 0 of every clip is the reference: the same person, head pose and light as the rest of the clip, with the face
at rest (zero expression, jaw closed). Its mesh is ``PortraitClip.neutral``; a portrait warp from frame 0 to frame
t uses ``neutral`` and ``vertices[t]`` with the clip's camera (``R = I``, ``T = 0``, the tracker's convention,
so vertices are camera-space). Meshes include the render-only mouth interior (:mod:`talk.synth.mouth`).

The set on disk (:func:`write_portrait_set`, read by :class:`talk.synth.portrait_dataset.PortraitClips`)::

    out_dir/portrait_set.json          the arguments (a resumed run must match them)
    out_dir/mesh.npz                   faces [F,3] and mouth_faces [K], shared by every clip (one topology)
    out_dir/clips/<name>.frames.npy    uint8 [T,H,W,3]      (memory-mapped by the dataset)
    out_dir/clips/<name>.vertices.npy  float32 [T,V,3]      (memory-mapped by the dataset)
    out_dir/clips/<name>.npz           truth: neutral [V,3], focal, image_size, fps, expression, jaw, shape,
                                       global_pose, translation, light_direction, mask_bits / mouth_bits
                                       (np.packbits of the [T,H,W] masks along W); written last: a clip is done
                                       when it exists
    out_dir/manifest.jsonl             one line per clip: name, split, seed, frames, files, style

Why raw ``.npy`` and not mp4 or compressed ``.npz``: a training sample needs two frames and two meshes of a clip
picked at random; a memory-mapped ``.npy`` reads exactly those bytes with no decoding (an mp4 decodes from the
last keyframe and is lossy; a compressed ``.npz`` inflates the whole array; PNG files decode at ~1-2 ms a frame).
The price is disk: at 256x256, 50 frames, ~9.8 MB of frames and ~3.7 MB of vertices (6210 a frame, with the
mouth) per clip, ~2.9 GB for 200 clips.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from render.camera import Camera
from render.rasterizer import rasterize
from render.textured import render_textured
from talk.errors import UserError
from talk.files import write_atomic, write_text_atomic
from talk.synth.portrait_style import (
    PortraitAssets,
    PortraitStyle,
    draw_style,
    portrait_albedo,
    portrait_background,
)

__all__ = [
    "PortraitClip",
    "PortraitSetError",
    "PortraitSetSummary",
    "clip_seed",
    "render_portrait_clip",
    "split_of",
    "write_portrait_set",
]

VERSION = 1


class PortraitSetError(UserError, ValueError):
    """Invalid arguments to the portrait-set writer, or a folder holding another set."""


@dataclass(frozen=True, eq=False)
class PortraitClip:
    """One rendered clip and its ground truth.

    Attributes:
        frames: ``[T,H,W,3]`` uint8; frame 0 is the reference (face at rest).
        vertices: ``[T,V,3]`` float32 camera-space meshes (head + mouth interior), one per frame.
        neutral: ``[V,3]`` float32 the reference's mesh (``vertices[0]``).
        faces: ``[F,3]`` int64.
        mouth_faces: ``[K]`` int64 indices into ``faces`` of the mouth interior (cavity, teeth, tongue).
        mask: ``[T,H,W]`` bool pixels showing the head.
        mouth_mask: ``[T,H,W]`` bool pixels showing the mouth interior.
        focal: focal length in pixels (camera ``R = I``, ``T = 0``, principal point at the image centre).
        fps: frame rate.
        expression: ``[T,E]`` FLAME expression coefficients (procedural head's named columns).
        jaw: ``[T,3]`` jaw axis-angle.
        shape: ``[S]`` identity coefficients.
        global_pose: ``[T,3]`` head rotation, axis-angle.
        translation: ``[T,3]`` metres, camera space.
        light_direction: ``[3]`` camera-space direction towards the light.
        style: the appearance it was drawn with.
    """

    frames: np.ndarray
    vertices: np.ndarray
    neutral: np.ndarray
    faces: np.ndarray
    mouth_faces: np.ndarray
    mask: np.ndarray
    mouth_mask: np.ndarray
    focal: float
    fps: float
    expression: np.ndarray
    jaw: np.ndarray
    shape: np.ndarray
    global_pose: np.ndarray
    translation: np.ndarray
    light_direction: np.ndarray
    style: PortraitStyle

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def camera(self) -> Camera:
        """The clip's camera (batch of 1)."""
        return Camera(R=torch.eye(3)[None], T=torch.zeros(1, 3), focal=self.focal, image_size=self.image_size)


def clip_seed(seed: int, index: int) -> int:
    """Seed of clip ``index`` of a set made with ``seed`` (independent streams per clip, stable as sets grow)."""
    return int(np.random.SeedSequence([int(seed), int(index), 0x9047]).generate_state(1)[0])


def render_portrait_clip(
    seed: int,
    n_frames: int = 50,
    size: int = 256,
    fps: float = 30.0,
    supersample: int = 2,
    assets: PortraitAssets | None = None,
) -> PortraitClip:
    """Render one synthetic portrait clip: a new person, shot and sentence, all drawn from ``seed``.

    Args:
        seed: everything (identity, appearance, camera, light, background, head motion, sentence).
        n_frames: T, including the reference frame 0.
        size: image side in pixels (square frames).
        fps: frame rate the speech motion is sampled at.
        supersample: render at ``supersample`` times the size and average down (anti-aliased edges; the cost
            grows with its square).
        assets: the loaded face model (:meth:`PortraitAssets.load`); None loads it once per process.

    Returns:
        The :class:`PortraitClip`.
    """
    if n_frames < 1 or size < 8 or supersample < 1 or not fps > 0:
        raise PortraitSetError(
            f"render_portrait_clip: need n_frames >= 1, size >= 8, supersample >= 1 and fps > 0, got {n_frames}, "
            f"{size}, {supersample}, {fps}."
        )
    assets = assets or PortraitAssets.load()
    style = draw_style(seed)
    motion = assets.speech_motion(style, n_frames, fps)
    head = assets.head_vertices(style, motion, n_frames, fps, size)
    mouth = assets.mouth(head.template, style.mouth_seed)
    mesh = mouth.attach(head.vertices, assets.faces, portrait_albedo(assets, style))
    focal = style.focal_factor * size
    camera = Camera(R=torch.eye(3)[None], T=torch.zeros(1, 3), focal=focal, image_size=(size, size))
    vertices = torch.from_numpy(mesh.vertices)
    faces = torch.from_numpy(mesh.faces)
    frames = _render(vertices, faces, camera, mesh.colors, style, size, supersample)
    face_ids = rasterize(camera.project(vertices), faces, (size, size)).face_ids.numpy()
    in_mouth = np.zeros(len(mesh.faces) + 1, bool)
    in_mouth[mesh.mouth_faces + 1] = True
    return PortraitClip(
        frames=frames,
        vertices=mesh.vertices,
        neutral=mesh.vertices[0].copy(),
        faces=mesh.faces,
        mouth_faces=mesh.mouth_faces,
        mask=face_ids >= 0,
        mouth_mask=in_mouth[face_ids + 1],
        focal=float(focal),
        fps=float(fps),
        expression=motion.expression.astype(np.float32),
        jaw=motion.jaw_pose.astype(np.float32),
        shape=np.asarray(style.shape, np.float32),
        global_pose=head.global_pose,
        translation=head.translation,
        light_direction=np.asarray(style.light_direction, np.float32),
        style=style,
    )


def _render(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    camera: Camera,
    colors: np.ndarray,
    style: PortraitStyle,
    size: int,
    supersample: int,
) -> np.ndarray:
    """``[T,H,W,3]`` uint8 frames, rendered ``supersample`` times larger and box-filtered down."""
    big = size * supersample
    cam = Camera(R=camera.R, T=camera.T, focal=float(camera.focal) * supersample, image_size=(big, big))
    background = portrait_background(style, big)
    out = np.empty((len(vertices), size, size, 3), np.uint8)
    for start in range(0, len(vertices), 16):  # bounded memory at large supersampling
        chunk = render_textured(
            vertices[start : start + 16],
            faces,
            cam,
            colors,
            background,
            style.light_direction,
            style.ambient,
            style.specular,
        )
        if supersample > 1:
            pooled = chunk.reshape(len(chunk), size, supersample, size, supersample, 3).mean(axis=(2, 4))
            chunk = (pooled + 0.5).astype(np.uint8)
        out[start : start + len(chunk)] = chunk
    return out


# ------------------------------------------------------------------------------------------------ the set
@dataclass(frozen=True)
class PortraitSetSummary:
    """What :func:`write_portrait_set` did.

    Attributes:
        out_dir: the set's folder.
        clips: clips in the set.
        rendered: clips rendered by this call (the others were already done).
        splits: clips per split.
        elapsed_seconds: wall time of this call.
        seconds_per_clip: mean render + write time of the clips rendered by this call (0 if none).
    """

    out_dir: Path
    clips: int
    rendered: int
    splits: dict[str, int]
    elapsed_seconds: float
    seconds_per_clip: float


def split_of(index: int, val_fraction: float, test_fraction: float) -> str:
    """Split of clip ``index``: evenly spread, exact fractions, and unchanged when a set grows."""

    def hit(fraction: float, shift: float) -> bool:
        return bool(np.floor((index + 1) * fraction + shift) > np.floor(index * fraction + shift))

    if hit(test_fraction, 0.0):
        return "test"
    return "val" if hit(val_fraction, 0.5) else "train"


def _check_config(root: Path, config: dict) -> None:
    path = root / "portrait_set.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())
    diff = {k: (old.get(k), v) for k, v in config.items() if old.get(k) != v}
    if diff:
        raise PortraitSetError(
            f"'{root}' holds a portrait set made with other arguments {diff} (old, new); pass the same arguments "
            "to resume it, or a new folder."
        )


def _write_clip(root: Path, name: str, clip: PortraitClip) -> None:
    clips = root / "clips"
    write_atomic(clips / f"{name}.frames.npy", lambda f: np.save(f, clip.frames))
    write_atomic(clips / f"{name}.vertices.npy", lambda f: np.save(f, clip.vertices.astype(np.float32)))
    truth = {
        f.name: getattr(clip, f.name)
        for f in fields(clip)
        if f.name not in ("frames", "vertices", "faces", "mouth_faces", "mask", "mouth_mask", "style")
    }
    truth["image_size"] = np.asarray(clip.image_size, np.int64)
    truth["mask_bits"] = np.packbits(clip.mask, axis=-1)
    truth["mouth_bits"] = np.packbits(clip.mouth_mask, axis=-1)
    # last: its presence marks the clip as finished (a killed run re-renders a clip without it)
    write_atomic(clips / f"{name}.npz", lambda f: np.savez(f, **truth))


def write_portrait_set(
    out_dir: str | Path,
    clips: int = 200,
    frames_per_clip: int = 50,
    seed: int = 0,
    progress: bool = True,
    size: int = 256,
    fps: float = 30.0,
    supersample: int = 2,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
) -> PortraitSetSummary:
    """Write a synthetic portrait-video set (layout in the module docstring); resumable and deterministic.

    Clip ``i`` is ``render_portrait_clip(clip_seed(seed, i), ...)``: the same arguments give the same files, and
    a run that was interrupted (or asked for more clips) renders only the clips without a finished truth file.

    Args:
        out_dir: the set's folder (created if missing).
        clips: number of clips.
        frames_per_clip: T per clip, including the reference frame 0.
        seed: seed of the whole set.
        progress: show a progress bar on stderr.
        size: frame side in pixels.
        fps: frame rate of the motion.
        supersample: anti-aliasing factor (see :func:`render_portrait_clip`).
        val_fraction: fraction of clips (hence identities) held out for validation.
        test_fraction: fraction held out for testing.

    Returns:
        A :class:`PortraitSetSummary`.
    """
    start = time.perf_counter()
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise PortraitSetError(f"out_dir '{root}' is a file; pass a folder for the portrait set.")
    if clips < 1 or frames_per_clip < 1:
        raise PortraitSetError(f"clips={clips}, frames_per_clip={frames_per_clip}; pass positive numbers.")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise PortraitSetError(
            f"val_fraction={val_fraction}, test_fraction={test_fraction}; each in [0, 1), summing below 1."
        )
    # everything but the clip count, which may grow between runs
    config = {
        "version": VERSION,
        "seed": seed,
        "frames_per_clip": frames_per_clip,
        "size": size,
        "fps": fps,
        "supersample": supersample,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
    }
    _check_config(root, config)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    write_text_atomic(root / "portrait_set.json", json.dumps(config, indent=1, sort_keys=True))

    assets = None
    records, rendered, render_time = [], 0, 0.0
    bar = tqdm(total=clips, desc="portraits", unit="clip", disable=not progress)
    for index in range(clips):
        name, cseed = f"clip_{index:05d}", clip_seed(seed, index)
        truth = root / "clips" / f"{name}.npz"
        frames_file, vertices_file = (root / "clips" / f"{name}.{k}.npy" for k in ("frames", "vertices"))
        if not (truth.exists() and frames_file.exists() and vertices_file.exists()):
            t0 = time.perf_counter()
            assets = assets or PortraitAssets.load()
            clip = render_portrait_clip(cseed, frames_per_clip, size, fps, supersample, assets)
            _write_clip(root, name, clip)
            rendered += 1
            render_time += time.perf_counter() - t0
        style = draw_style(cseed)
        records.append(
            {
                "name": name,
                "index": index,
                "seed": cseed,
                "split": split_of(index, val_fraction, test_fraction),
                "frames": frames_per_clip,
                "size": [size, size],
                "fps": fps,
                "files": {
                    "frames": f"clips/{name}.frames.npy",
                    "vertices": f"clips/{name}.vertices.npy",
                    "truth": f"clips/{name}.npz",
                },
                "style": style.to_json(),
            }
        )
        bar.update()
    bar.close()
    if not (root / "mesh.npz").exists():  # one topology for every clip: the head's faces, then the mouth's
        assets = assets or PortraitAssets.load()
        mesh = assets.mouth(np.asarray(assets.face.model["v_template"]), 0).attach(
            np.asarray(assets.face.model["v_template"]), assets.faces
        )
        write_atomic(root / "mesh.npz", lambda f: np.savez(f, faces=mesh.faces, mouth_faces=mesh.mouth_faces))
    write_text_atomic(root / "manifest.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    splits = {s: sum(r["split"] == s for r in records) for s in ("train", "val", "test")}
    return PortraitSetSummary(
        out_dir=root,
        clips=clips,
        rendered=rendered,
        splits=splits,
        elapsed_seconds=time.perf_counter() - start,
        seconds_per_clip=render_time / rendered if rendered else 0.0,
    )
