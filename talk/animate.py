"""The audio-to-video path: wav -> trained model -> vertices -> rendered frames -> mp4 with the audio."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from talk.checkpoints import load_model
from talk.errors import CheckpointError, TalkError


@dataclass(frozen=True)
class AnimationResult:
    """What :func:`animate` wrote."""

    path: Path
    frames: int
    fps: float
    seconds: float
    elapsed: float


def animate(
    audio: str | Path,
    checkpoint: str | Path,
    output: str | Path,
    subject: str | None = None,
    size: int = 512,
    view: str = "front",
    device: str = "cpu",
    chunk: int = 16,
) -> AnimationResult:
    """Animates speech with a trained model and writes an H.264/AAC mp4.

    Frames are rendered and streamed to ffmpeg in chunks, so memory does not grow with the audio length.

    Args:
        audio: Speech file (any format, rate and channel count that ``audio.load_audio`` reads).
        checkpoint: ``talk fit`` checkpoint.
        output: Output ``.mp4``.
        subject: Subject whose template and style drive the face (default: the first training subject).
        size: Frame width and height in pixels.
        view: ``front`` or ``three_quarter``.
        device: Torch device for the model.
        chunk: Frames rendered per batch.
    """
    from audio.io import load_audio
    from render import TorchRasterizer, VideoWriter, fit_camera, to_uint8

    start = time.perf_counter()
    if size < 16 or size % 2:
        raise TalkError(f"--size {size} must be an even number of pixels, at least 16.")
    audio_path = Path(audio)
    if not audio_path.is_file():
        raise TalkError(f"audio file {audio_path} not found.")
    model = load_model(checkpoint, device)
    wav = load_audio(audio_path, sample_rate=int(model.assets["sample_rate"]))
    faces = model.assets.get("faces")
    if faces is None:
        raise CheckpointError(
            f"{checkpoint} has no mesh faces; retrain with data.face_model_path pointing at the FLAME model file."
        )
    vertices = model.animate(torch.from_numpy(wav), subject=subject)  # [T, V, 3]
    fps = float(model.fps)
    faces_t = torch.as_tensor(faces, dtype=torch.long)
    camera = fit_camera(vertices, image_size=(size, size), view=view)
    renderer = TorchRasterizer()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(output, fps=fps, audio=audio_path) as writer:
        for i in range(0, vertices.shape[0], chunk):
            writer.write(to_uint8(renderer.render(vertices[i : i + chunk], faces_t, camera)))
    frames_total = int(vertices.shape[0])
    return AnimationResult(output, frames_total, fps, frames_total / fps, time.perf_counter() - start)
