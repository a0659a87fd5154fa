"""The audio-to-video path: wav -> trained model -> vertices -> rendered frames -> mp4 with the audio."""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from talk.errors import CheckpointError, TalkError


@dataclass(frozen=True)
class AnimationResult:
    """What :func:`animate` wrote."""

    path: Path
    frames: int
    fps: float
    seconds: float
    elapsed: float


def load_model(checkpoint: str | Path, device: str = "cpu"):  # noqa: ANN201 - a TalkModule
    """Loads any talk model from a ``talk fit`` checkpoint, ready for inference.

    Raises:
        CheckpointError: when the file is missing, not a checkpoint, or was not written by ``talk fit``.
    """
    from talk.models.base import TalkModule

    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; train one with `talk fit -c CONFIG`.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means it is not a checkpoint
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}).") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint written by `talk fit`.")
    if not ckpt.get("talk_assets", {}).get("templates"):
        raise CheckpointError(f"{path} holds no talk assets (templates, faces); it was not written by `talk fit`.")
    class_path = ckpt["hyper_parameters"].get("_class_path")
    if not isinstance(class_path, str) or "." not in class_path:
        raise CheckpointError(f"{path} does not name its model class; it was not written by `talk fit`.")
    module_name, class_name = class_path.rsplit(".", 1)
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise CheckpointError(f"{path} needs model class {class_path}, which this installation lacks.") from None
    if not (isinstance(cls, type) and issubclass(cls, TalkModule)):
        raise CheckpointError(f"{path} names {class_path}, which is not a talk model.")
    # Lightning rebuilds the model (and its injected submodules) from the config saved by `talk fit`.
    model = cls.load_from_checkpoint(path, map_location="cpu", weights_only=False)
    return model.to(device).eval()


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
